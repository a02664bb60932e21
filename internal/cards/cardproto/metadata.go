package cardproto

// NetMetadata is what the metadata service of a net card (IMDSv2 at
// 169.254.169.254) answers for the instance its interface is attached
// to. azoted sends it in NetState.Metadata, whole, on every push: at
// start, when the VPC changes and whenever the role's credentials are
// refreshed. The card serves nothing but what it holds.
type NetMetadata struct {
	InstanceID       string `json:"instance_id"`
	ImageID          string `json:"image_id"`          // ami-id
	InstanceType     string `json:"instance_type"`     // the vCPU/memory shape, e.g. "azote.2c.1024m"
	Hostname         string `json:"hostname"`          // hostname, local-hostname
	AccountID        string `json:"account_id"`        // in the identity document
	Region           string `json:"region"`            // placement/region
	AvailabilityZone string `json:"availability_zone"` // placement/availability-zone
	// Interfaces are the instance's interfaces (network/interfaces/macs/);
	// the one the card serves is found by its MAC (mac, local-ipv4).
	Interfaces []NetMetadataInterface `json:"interfaces"`
	// PublicKeys are served as public-keys/N=NAME and
	// public-keys/N/openssh-key, in order.
	PublicKeys []NetPublicKey `json:"public_keys,omitempty"`
	// UserData is served at /latest/user-data (404 when empty).
	UserData []byte `json:"user_data,omitempty"`
	// IdentityDocument is dynamic/instance-identity/document, as served
	// (JSON); IdentitySignature (base64) its signature by the host's
	// identity key, whose public part azoted publishes.
	IdentityDocument  []byte `json:"identity_document,omitempty"`
	IdentitySignature string `json:"identity_signature,omitempty"`
	// Role is the instance profile's role and its current credentials
	// (iam/info, iam/security-credentials/ROLE); nil without a profile.
	Role *NetRoleCredentials `json:"role,omitempty"`
	// HTTPTokens is "required" (the default: every GET needs a token) or
	// "optional"; HopLimit is the IP TTL of every answer (1..64).
	HTTPTokens string `json:"http_tokens"`
	HopLimit   int    `json:"hop_limit"`
}

// NetMetadataInterface is one interface of the instance, as
// network/interfaces/macs/MAC/ describes it.
type NetMetadataInterface struct {
	MAC              string   `json:"mac"`
	DeviceNumber     int      `json:"device_number"`
	InterfaceID      string   `json:"interface_id"`
	LocalIPv4        string   `json:"local_ipv4"`
	SubnetID         string   `json:"subnet_id"`
	SubnetCIDR       string   `json:"subnet_cidr"`
	VPCID            string   `json:"vpc_id"`
	VPCCIDR          string   `json:"vpc_cidr"`
	SecurityGroups   []string `json:"security_groups,omitempty"` // names
	SecurityGroupIDs []string `json:"security_group_ids,omitempty"`
}

// NetPublicKey is one key pair's public key, OpenSSH authorized_keys
// format.
type NetPublicKey struct {
	Name    string `json:"name"`
	OpenSSH string `json:"openssh"`
}

// NetRoleCredentials are a role session's credentials for the instance,
// served as EC2 serves them.
type NetRoleCredentials struct {
	InstanceProfileARN string `json:"instance_profile_arn"`
	InstanceProfileID  string `json:"instance_profile_id"`
	RoleName           string `json:"role_name"`
	AccessKeyID        string `json:"access_key_id"`
	SecretAccessKey    string `json:"secret_access_key"`
	Token              string `json:"token"`
	// Expiration and LastUpdated are RFC 3339 UTC ("2006-01-02T15:04:05Z").
	Expiration  string `json:"expiration"`
	LastUpdated string `json:"last_updated"`
}
