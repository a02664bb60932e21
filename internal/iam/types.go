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
