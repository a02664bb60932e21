package iam

import (
	"time"
)

// Account is the one account of a host (a fleet shares it).
type Account struct {
	ID            string    `json:"id"`
	Region        string    `json:"region"`
	CreatedAt     time.Time `json:"created_at"`
	Initialized   bool      `json:"initialized"`
	InitializedAt time.Time `json:"initialized_at,omitzero"`
	// RootMFA is the serial of root's MFA device.
	RootMFA string `json:"root_mfa,omitempty"`
}

// User is a person's long-term identity.
type User struct {
	UserName  string            `json:"UserName"`
	UserID    string            `json:"UserId"`
	ARN       string            `json:"Arn"`
	CreatedAt time.Time         `json:"CreateDate"`
	Groups    []string          `json:"Groups,omitempty"`
	Attached  []string          `json:"AttachedPolicies,omitempty"`
	Inline    map[string]string `json:"InlinePolicies,omitempty"`
	MFASerial string            `json:"MFASerial,omitempty"`
}

// Group collects users that share policies.
type Group struct {
	GroupName string            `json:"GroupName"`
	GroupID   string            `json:"GroupId"`
	ARN       string            `json:"Arn"`
	CreatedAt time.Time         `json:"CreateDate"`
	Attached  []string          `json:"AttachedPolicies,omitempty"`
	Inline    map[string]string `json:"InlinePolicies,omitempty"`
}

// Role is an identity that principals assume for a session.
type Role struct {
	RoleName    string            `json:"RoleName"`
	RoleID      string            `json:"RoleId"`
	ARN         string            `json:"Arn"`
	CreatedAt   time.Time         `json:"CreateDate"`
	TrustPolicy string            `json:"AssumeRolePolicyDocument"`
	Attached    []string          `json:"AttachedPolicies,omitempty"`
	Inline      map[string]string `json:"InlinePolicies,omitempty"`
	// MaxSessionDuration in seconds (default 3600, at most 12 h).
	MaxSessionDuration int64 `json:"MaxSessionDuration"`
}

// ManagedPolicy is a named policy that can be attached to many identities.
type ManagedPolicy struct {
	PolicyName string    `json:"PolicyName"`
	PolicyID   string    `json:"PolicyId"`
	ARN        string    `json:"Arn"`
	Document   string    `json:"PolicyDocument"`
	CreatedAt  time.Time `json:"CreateDate"`
	UpdatedAt  time.Time `json:"UpdateDate"`
	// BuiltIn policies are defined by azote and cannot change.
	BuiltIn bool `json:"BuiltIn,omitempty"`
}

// Access key states.
const (
	StatusActive   = "Active"
	StatusInactive = "Inactive"
)

// AccessKey is a long-term credential of a user. Its secret is stored
// only sealed.
type AccessKey struct {
	AccessKeyID string    `json:"AccessKeyId"`
	UserName    string    `json:"UserName"`
	Status      string    `json:"Status"`
	CreatedAt   time.Time `json:"CreateDate"`
	Sealed      []byte    `json:"SealedSecret,omitempty"`
}

// mfaRecord is a virtual MFA device as stored: the seed sealed, the
// replay and lockout state in the clear.
type mfaRecord struct {
	Serial      string    `json:"serial"`
	Name        string    `json:"name"`
	UserName    string    `json:"user,omitempty"` // "" for root's device
	CreatedAt   time.Time `json:"created_at"`
	EnabledAt   time.Time `json:"enabled_at,omitzero"`
	Sealed      []byte    `json:"sealed_seed"`
	LastCounter uint64    `json:"last_counter"`
	Failures    int       `json:"failures"`
	LockedUntil time.Time `json:"locked_until,omitzero"`
	Enabled     bool      `json:"enabled"`
}

// MFADevice is what callers see of a device.
type MFADevice struct {
	SerialNumber string    `json:"SerialNumber"`
	UserName     string    `json:"UserName,omitempty"`
	CreatedAt    time.Time `json:"CreateDate"`
	EnableDate   time.Time `json:"EnableDate,omitzero"`
	Enabled      bool      `json:"Enabled"`
}

// Store tables.
const (
	tAccount  = "iam-account"
	tUsers    = "iam-users"
	tGroups   = "iam-groups"
	tRoles    = "iam-roles"
	tPolicies = "iam-policies"
	tKeys     = "iam-keys"
	tMFA      = "iam-mfa"
	tMeta     = "iam-meta"
)
