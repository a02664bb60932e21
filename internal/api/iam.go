package api

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

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

// AccessKey is a long-term credential of a user, without its secret.
type AccessKey struct {
	AccessKeyID string    `json:"AccessKeyId"`
	UserName    string    `json:"UserName"`
	Status      string    `json:"Status"`
	CreatedAt   time.Time `json:"CreateDate"`
}

// MFADevice is what callers see of a device.
type MFADevice struct {
	SerialNumber string    `json:"SerialNumber"`
	UserName     string    `json:"UserName,omitempty"`
	CreatedAt    time.Time `json:"CreateDate"`
	EnableDate   time.Time `json:"EnableDate,omitzero"`
	Enabled      bool      `json:"Enabled"`
}

// NewAccessKey is a key as created: the only time its secret is shown.
type NewAccessKey struct {
	AccessKey
	SecretAccessKey string `json:"SecretAccessKey"`
}

// NewVirtualMFADevice is a device as created: the only time its seed is
// shown.
type NewVirtualMFADevice struct {
	SerialNumber     string `json:"SerialNumber"`
	Base32StringSeed string `json:"Base32StringSeed"`
	URI              string `json:"URI"`
	QRCode           string `json:"QRCodeTerminal"`
}

// AdminGroup is the group `azote init` makes for daily administration.
const AdminGroup = "Administrators"

// InitRequest completes the bootstrap.
type InitRequest struct {
	// Two consecutive codes of root's MFA device.
	RootCode1 string `json:"RootCode1"`
	RootCode2 string `json:"RootCode2"`
	// AdminUser is the first user for daily work.
	AdminUser string `json:"AdminUser"`
}

// InitResponse carries the admin's first access key, shown once.
type InitResponse struct {
	AccountID string       `json:"AccountId"`
	RootMFA   string       `json:"RootMFASerial"`
	Admin     User         `json:"Admin"`
	AccessKey NewAccessKey `json:"AccessKey"`
}

// Request bodies of the IAM actions, in AWS's field names. Each is named
// after what it carries; the action (iam:Name) says what is done with it:
// UserRequest serves CreateUser, GetUser, DeleteUser, CreateAccessKey,
// ListAccessKeys and the like.
type (
	UserRequest struct {
		UserName string `json:"UserName,omitempty"`
	}
	GroupRequest struct {
		GroupName string `json:"GroupName"`
	}
	GroupMemberRequest struct {
		GroupName string `json:"GroupName"`
		UserName  string `json:"UserName"`
	}
	CreateRoleRequest struct {
		RoleName                 string `json:"RoleName"`
		AssumeRolePolicyDocument string `json:"AssumeRolePolicyDocument"`
		MaxSessionDuration       int64  `json:"MaxSessionDuration,omitempty"`
	}
	RoleRequest struct {
		RoleName string `json:"RoleName"`
	}
	UpdateAssumeRolePolicyRequest struct {
		RoleName       string `json:"RoleName"`
		PolicyDocument string `json:"PolicyDocument"`
	}
	CreatePolicyRequest struct {
		PolicyName     string `json:"PolicyName"`
		PolicyDocument string `json:"PolicyDocument"`
	}
	PolicyRequest struct {
		PolicyArn string `json:"PolicyArn"`
	}
	// AttachRequest names the identity by one of UserName, GroupName,
	// RoleName (the action says which).
	AttachRequest struct {
		UserName  string `json:"UserName,omitempty"`
		GroupName string `json:"GroupName,omitempty"`
		RoleName  string `json:"RoleName,omitempty"`
		PolicyArn string `json:"PolicyArn"`
	}
	InlinePolicyRequest struct {
		UserName       string `json:"UserName,omitempty"`
		GroupName      string `json:"GroupName,omitempty"`
		RoleName       string `json:"RoleName,omitempty"`
		PolicyName     string `json:"PolicyName"`
		PolicyDocument string `json:"PolicyDocument,omitempty"`
	}
	AccessKeyRequest struct {
		UserName    string `json:"UserName,omitempty"`
		AccessKeyID string `json:"AccessKeyId"`
		Status      string `json:"Status,omitempty"`
	}
	CreateVirtualMFADeviceRequest struct {
		VirtualMFADeviceName string `json:"VirtualMFADeviceName"`
		UserName             string `json:"UserName,omitempty"`
	}
	EnableMFADeviceRequest struct {
		UserName            string `json:"UserName,omitempty"`
		SerialNumber        string `json:"SerialNumber"`
		AuthenticationCode1 string `json:"AuthenticationCode1"`
		AuthenticationCode2 string `json:"AuthenticationCode2"`
	}
	MFADeviceRequest struct {
		UserName     string `json:"UserName,omitempty"`
		SerialNumber string `json:"SerialNumber"`
	}
)

// Snapshot is the permission state of the account without any secret:
// what `azote iam export` saves and `azote iam diff` compares against
// ("keep the correct state and keep comparing").
type Snapshot struct {
	AccountID string                    `json:"AccountId"`
	Users     map[string]SnapshotUser   `json:"Users"`
	Groups    map[string]SnapshotPolicy `json:"Groups"`
	Roles     map[string]SnapshotRole   `json:"Roles"`
	Policies  map[string]string         `json:"Policies"` // customer policy name → document
}

// SnapshotPolicy is what is attached to an identity: managed policy
// ARNs (sorted) and inline documents (canonical JSON) by name.
type SnapshotPolicy struct {
	Attached []string          `json:"AttachedPolicies"`
	Inline   map[string]string `json:"InlinePolicies"`
}

// SnapshotUser is a user's permissions: its policies, groups, whether
// it has MFA, and its access keys' states (never their secrets).
type SnapshotUser struct {
	SnapshotPolicy
	Groups     []string          `json:"Groups"`
	MFA        bool              `json:"MFAEnabled"`
	AccessKeys map[string]string `json:"AccessKeys"` // id → status
}

// SnapshotRole is a role's permissions and its trust policy.
type SnapshotRole struct {
	SnapshotPolicy
	Trust string `json:"AssumeRolePolicyDocument"`
}

// Change is one difference between two snapshots.
type Change struct {
	Kind   string `json:"kind"` // added, removed, changed
	Path   string `json:"path"` // e.g. user/alice/attached
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

func (c Change) String() string {
	switch c.Kind {
	case "added":
		return fmt.Sprintf("+ %s: %s", c.Path, c.After)
	case "removed":
		return fmt.Sprintf("- %s: %s", c.Path, c.Before)
	}
	return fmt.Sprintf("~ %s: %s -> %s", c.Path, c.Before, c.After)
}

// Diff lists what changed from old to cur, sorted by path.
func Diff(old, cur Snapshot) []Change {
	var out []Change
	flat := func(s Snapshot) map[string]string {
		m := map[string]string{}
		pol := func(prefix string, p SnapshotPolicy) {
			for _, a := range p.Attached {
				m[prefix+"/attached/"+a] = "attached"
			}
			for k, v := range p.Inline {
				m[prefix+"/inline/"+k] = v
			}
		}
		for n, u := range s.Users {
			m["user/"+n] = "exists"
			pol("user/"+n, u.SnapshotPolicy)
			for _, g := range u.Groups {
				m["user/"+n+"/group/"+g] = "member"
			}
			m["user/"+n+"/mfa"] = fmt.Sprint(u.MFA)
			for id, st := range u.AccessKeys {
				m["user/"+n+"/access-key/"+id] = st
			}
		}
		for n, g := range s.Groups {
			m["group/"+n] = "exists"
			pol("group/"+n, g)
		}
		for n, r := range s.Roles {
			m["role/"+n] = "exists"
			pol("role/"+n, r.SnapshotPolicy)
			m["role/"+n+"/trust"] = r.Trust
		}
		for n, d := range s.Policies {
			m["policy/"+n] = d
		}
		return m
	}
	a, b := flat(old), flat(cur)
	for k, v := range a {
		w, ok := b[k]
		switch {
		case !ok:
			out = append(out, Change{Kind: "removed", Path: k, Before: v})
		case v != w:
			out = append(out, Change{Kind: "changed", Path: k, Before: v, After: w})
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, Change{Kind: "added", Path: k, After: w})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return strings.Compare(out[i].Path, out[j].Path) < 0
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

// InstanceProfile is a container for one role that an instance is
// launched with: the instance's code gets the role's session
// credentials through the metadata service (EC2's instance profiles).
type InstanceProfile struct {
	InstanceProfileName string    `json:"InstanceProfileName"`
	InstanceProfileID   string    `json:"InstanceProfileId"`
	ARN                 string    `json:"Arn"`
	CreatedAt           time.Time `json:"CreateDate"`
	// Roles holds at most one role (AWS's limit), as AWS lists it.
	Roles []Role `json:"Roles"`
}

// ComputeServicePrincipal is the service principal a role's trust policy
// names to let instances have its credentials (AWS's ec2.amazonaws.com):
// {"Principal": {"Service": "compute.azote"}}.
const ComputeServicePrincipal = "compute.azote"

// Request bodies of the instance-profile actions, in AWS's field names.
type (
	InstanceProfileRequest struct {
		InstanceProfileName string `json:"InstanceProfileName"`
	}
	InstanceProfileRoleRequest struct {
		InstanceProfileName string `json:"InstanceProfileName"`
		RoleName            string `json:"RoleName"`
	}
)
