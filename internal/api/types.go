package api

import (
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Instance states.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateStopping     = "stopping"
	StateStopped      = "stopped"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
	StateFailed       = "failed"
)

// Limits of instance requests.
const (
	MinMemoryMiB = 64
	MaxBodyBytes = 64 << 10
)

// RunInstanceRequest is the body of POST /v1/instances.
type RunInstanceRequest struct {
	Name                  string `json:"name"`
	Image                 string `json:"image"` // id or name
	VCPUs                 int    `json:"vcpus"`
	MemoryMiB             int    `json:"memory_mib"`
	TerminationProtection bool   `json:"termination_protection,omitempty"`
	// Volumes are attached in order: the first is /dev/vda in the guest.
	Volumes []VolumeAttachment `json:"volumes,omitempty"`
	// RootVolume is attached first (/dev/vda) and mounted as the root
	// filesystem by the agent.
	RootVolume string `json:"root_volume,omitempty"`
	// Tags label the instance; policies test them as aws:ResourceTag/KEY.
	Tags map[string]string `json:"tags,omitempty"`
	// Subnet, when set, gives the instance a primary network interface
	// (device index 0) in this subnet, made and attached with the
	// instance and deleted with it. SecurityGroups (none: the VPC's
	// default group) and PrivateIP (empty: the lowest free address) are
	// the interface's.
	Subnet         string   `json:"subnet,omitempty"`
	SecurityGroups []string `json:"security_groups,omitempty"`
	PrivateIP      string   `json:"private_ip,omitempty"`
	// IAMInstanceProfile (a name or ARN) gives the instance's code the
	// credentials of the profile's role through the metadata service;
	// the caller needs iam:PassRole on the role.
	IAMInstanceProfile string `json:"iam_instance_profile,omitempty"`
	// InstanceProfile is the profile IAMInstanceProfile resolved to when
	// the call was authorised (the gateway sets it; a client cannot): the
	// launch takes this profile and role, never the name looked up again.
	InstanceProfile *InstanceProfile `json:"-"`
	// KeyName is a key pair whose public key the metadata service
	// serves (public-keys/0/openssh-key).
	KeyName string `json:"key_name,omitempty"`
	// UserData (at most MaxUserData bytes) is served at user-data and
	// run once at first boot by the agent when it starts with "#!".
	UserData []byte `json:"user_data,omitempty"`
	// Metadata sets how the metadata service answers (nil: defaults).
	Metadata *MetadataOptions `json:"metadata_options,omitempty"`
}

// MaxUserData is the most user data an instance takes (EC2's 16 KiB).
const MaxUserData = 16 << 10

// MetadataOptions are an instance's metadata service settings, as EC2's
// InstanceMetadataOptions.
type MetadataOptions struct {
	// HTTPTokens is "required" (IMDSv2 only, the default) or "optional"
	// (IMDSv1 GETs without a token answered too).
	HTTPTokens string `json:"http_tokens,omitempty"`
	// HTTPPutResponseHopLimit is the IP TTL of the service's answers,
	// 1..64 (default 1: a token cannot leave the instance).
	HTTPPutResponseHopLimit int `json:"http_put_response_hop_limit,omitempty"`
}

// Metadata token settings.
const (
	HTTPTokensRequired = "required"
	HTTPTokensOptional = "optional"
)

// VolumeAttachment names a volume to attach to an instance.
type VolumeAttachment struct {
	Volume   string `json:"volume"` // id or name
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Volume kinds and states.
const (
	VolumeInstanceStore = "instance-store"
	VolumePersistent    = "persistent"

	VolumeAvailable = "available"
	VolumeInUse     = "in-use"
	VolumeDeleted   = "deleted"  // persistent, recoverable until purge_at
	VolumeCreating  = "creating" // an import in progress: not usable, removed if it fails
)

// VolumeImportPath is the route of an import: POST, the disk's raw bytes
// as the body (sent UNSIGNED-PAYLOAD: the fill card checks their
// SHA-256), the parameters (ImportVolumeRequest) in the query.
const VolumeImportPath = "/v1/volumes/import"

// ImportVolumeRequest is the query of POST /v1/volumes/import: a
// persistent volume filled from the raw disk in the request body.
type ImportVolumeRequest struct {
	Name string `json:"name,omitempty"`
	// SizeBytes is the volume's size; 0 makes it Length rounded up to
	// 4 KiB (at least 1 MiB). It may not be smaller than Length.
	SizeBytes int64 `json:"size_bytes,omitempty"`
	// Length is the number of bytes the body carries, and SHA256 their
	// hex digest; a body that differs in either is refused.
	Length             int64  `json:"length"`
	SHA256             string `json:"sha256"`
	DeletionProtection bool   `json:"deletion_protection,omitempty"`
	Plaintext          bool   `json:"plaintext,omitempty"`
	// KMSKeyID names the KMS key (id, ARN or alias) the data key is made
	// under; the account's default volume key when empty.
	KMSKeyID string `json:"kms_key_id,omitempty"`
}

// CreateVolumeRequest is the body of POST /v1/volumes.
type CreateVolumeRequest struct {
	Name               string `json:"name,omitempty"`
	SizeBytes          int64  `json:"size_bytes"`
	Kind               string `json:"kind"`
	IOPS               int64  `json:"iops,omitempty"`
	ThroughputMiB      int64  `json:"throughput_mib,omitempty"`
	DeletionProtection bool   `json:"deletion_protection,omitempty"`
	// Plaintext stores sectors unencrypted (for comparison benchmarks).
	Plaintext bool `json:"plaintext,omitempty"`
	// KMSKeyID names the KMS key (id, ARN or alias) a persistent
	// volume's data key is made under; the account's default volume key
	// (alias/azote/volumes, made on first use) when empty.
	KMSKeyID string `json:"kms_key_id,omitempty"`
	// DirectIO opens the backing file with O_DIRECT: the host's page cache
	// is bypassed (the guest caches for itself), as QEMU's cache=none.
	DirectIO bool `json:"direct_io,omitempty"`
	// Tags label the volume; policies test them as aws:ResourceTag/KEY.
	Tags map[string]string `json:"tags,omitempty"`
	// Image, when set, fills a persistent volume with an ext4 root
	// filesystem holding the image's initramfs tree, bootable with
	// RunInstanceRequest.RootVolume.
	Image string `json:"image,omitempty"`
}

// AttachVolumeRequest is the body of POST /v1/volumes/{ref}/attach.
type AttachVolumeRequest struct {
	Instance string `json:"instance"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ModifyVolumeRequest is the body of PATCH /v1/volumes/{ref}.
type ModifyVolumeRequest struct {
	DeletionProtection *bool `json:"deletion_protection,omitempty"`
}

// Volume is the public view of a volume.
type Volume struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Kind          string `json:"kind"`
	State         string `json:"state"`
	SizeBytes     int64  `json:"size_bytes"`
	IOPS          int64  `json:"iops,omitempty"`
	ThroughputMiB int64  `json:"throughput_mib,omitempty"`
	Encrypted     bool   `json:"encrypted"`
	Cipher        string `json:"cipher,omitempty"`
	// KMSKeyID is the ARN of the KMS key the data key of an encrypted
	// persistent volume is encrypted under.
	KMSKeyID           string            `json:"kms_key_id,omitempty"`
	DirectIO           bool              `json:"direct_io,omitempty"`
	DeletionProtection bool              `json:"deletion_protection"`
	AttachedTo         string            `json:"attached_to,omitempty"`
	ReadOnly           bool              `json:"read_only,omitempty"`
	SourceImage        string            `json:"source_image,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
	CreatedAt          time.Time         `json:"created_at"`
	DeletedAt          *time.Time        `json:"deleted_at,omitempty"`
	PurgeAt            *time.Time        `json:"purge_at,omitempty"`
}

// ModifyInstanceRequest is the body of PATCH /v1/instances/{id}.
type ModifyInstanceRequest struct {
	TerminationProtection *bool `json:"termination_protection,omitempty"`
}

// StopInstanceRequest is the body of POST /v1/instances/{id}/stop.
type StopInstanceRequest struct {
	// Force ends the machine at once instead of asking the guest.
	Force bool `json:"force,omitempty"`
}

// ExecRequest is the body of POST /v1/instances/{id}/exec: a command the
// guest agent runs, as User (root when empty). The answer streams
// ExecEvent lines (Content-Type ExecContentType), the last one Exit or
// Error. Interactive sessions (a login shell on a pseudo-terminal when
// Command is empty) ask for an upgraded connection (Upgrade: ExecUpgrade)
// that then carries ExecEvent lines both ways.
type ExecRequest struct {
	Command []string `json:"command,omitempty"`
	User    string   `json:"user,omitempty"`
	// Stdin is the whole input of a non-interactive command, at most
	// MaxExecStdin bytes; it is never audited.
	Stdin []byte `json:"stdin,omitempty"`
	// TimeoutSeconds ends a non-interactive command (SIGKILL) after that
	// long; 0 means DefaultExecTimeout, at most MaxExecTimeout.
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
	Interactive    bool   `json:"interactive,omitempty"`
	Rows           uint16 `json:"rows,omitempty"`
	Cols           uint16 `json:"cols,omitempty"`
}

// Bounds and names of exec sessions.
const (
	MaxExecStdin       = 32 << 10 // base64 in JSON, within MaxBodyBytes
	DefaultExecTimeout = 5 * time.Minute
	MaxExecTimeout     = 24 * time.Hour
	ExecContentType    = "application/x-ndjson"
	ExecUpgrade        = "azote-exec/1"
)

// ExecEvent is one line of an exec stream. From azoted: output (Stdout,
// Stderr), then Exit, or Error if the session failed after it began.
// From the client of an interactive session: Stdin, CloseStdin, Resize.
type ExecEvent struct {
	Stdout     []byte      `json:"stdout,omitempty"`
	Stderr     []byte      `json:"stderr,omitempty"`
	Exit       *ExecExit   `json:"exit,omitempty"`
	Error      *Error      `json:"error,omitempty"`
	Stdin      []byte      `json:"stdin,omitempty"`
	CloseStdin bool        `json:"close_stdin,omitempty"`
	Resize     *WindowSize `json:"resize,omitempty"`
}

// ExecExit is how an exec session's command ended: its exit code, or
// the signal that killed it (Code is then 128+signal, as shells say).
type ExecExit struct {
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
}

// WindowSize is a terminal's size.
type WindowSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Instance is the public view of an instance.
type Instance struct {
	ID                    string     `json:"id"`
	Name                  string     `json:"name"`
	State                 string     `json:"state"`
	StateReason           string     `json:"state_reason,omitempty"`
	ImageID               string     `json:"image_id"`
	VCPUs                 int        `json:"vcpus"`
	MemoryMiB             int        `json:"memory_mib"`
	TerminationProtection bool       `json:"termination_protection"`
	Engine                string     `json:"engine,omitempty"`
	Accel                 string     `json:"accel,omitempty"`
	Cmdline               string     `json:"cmdline,omitempty"`
	CmdlineSHA384         string     `json:"cmdline_sha384,omitempty"`
	PID                   int        `json:"pid,omitempty"`
	CreatedAt             time.Time  `json:"created_at"`
	LaunchedAt            *time.Time `json:"launched_at,omitempty"`
	ReadyAt               *time.Time `json:"ready_at,omitempty"`
	TerminatedAt          *time.Time `json:"terminated_at,omitempty"`
	Ready                 bool       `json:"ready"`
	// BootMs is the host-side time from engine launch (or, after a guest
	// reboot, from the reset) to the agent's ready line; BootCount counts
	// boots (launches and guest reboots).
	BootMs    int64        `json:"boot_ms,omitempty"`
	BootCount int          `json:"boot_count"`
	Agent     *AgentReport `json:"agent,omitempty"`
	// Volumes are the attached volumes in device order (vda, vdb, …).
	Volumes []InstanceVolume `json:"volumes,omitempty"`
	// PrivateIP is the address of the primary interface (device index
	// 0), if the instance has one; NetworkInterfaces are all of its
	// interfaces by device index.
	PrivateIP         string                     `json:"private_ip,omitempty"`
	NetworkInterfaces []InstanceNetworkInterface `json:"network_interfaces,omitempty"`
	// IAMInstanceProfile is the ARN of the instance profile whose role
	// the instance's code gets credentials of; KeyName its key pair.
	IAMInstanceProfile string `json:"iam_instance_profile,omitempty"`
	KeyName            string `json:"key_name,omitempty"`
	// UserDataSHA256 is the digest of the instance's user data (hex),
	// a measured input of its launch.
	UserDataSHA256 string           `json:"user_data_sha256,omitempty"`
	Metadata       *MetadataOptions `json:"metadata_options,omitempty"`
	// SSHHostKeys are the guest's SSH host public keys as its agent
	// reported them on the console at its last boot ("ssh-ed25519
	// AAAA…"): what `azote instance ssh` trusts.
	SSHHostKeys []string `json:"ssh_host_keys,omitempty"`
	// Revision increases with every change; see GET ?after=.
	Revision uint64            `json:"revision"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// InstanceVolume is one attached volume.
type InstanceVolume struct {
	VolumeID string `json:"volume_id"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// Root marks the root volume (/dev/vda, mounted as /): it stays
	// attached first until the instance is terminated.
	Root bool `json:"root,omitempty"`
	// CardPID is the blk card serving it while the instance runs.
	CardPID int `json:"card_pid,omitempty"`
}

// Image is the public view of a guest image.
type Image struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	KernelSHA384  string `json:"kernel_sha384"`
	InitrdSHA384  string `json:"initrd_sha384"`
	Cmdline       string `json:"cmdline"`
	CmdlineSHA384 string `json:"cmdline_sha384"`
	KernelVersion string `json:"kernel_version,omitempty"`
	KernelSize    int64  `json:"kernel_size"`
	InitrdSize    int64  `json:"initrd_size"`
	// RootfsSHA384, for a distribution image (azote image build
	// --distro debian), is the archive its root volumes are made from;
	// the initramfs then only mounts the root volume and starts its init.
	RootfsSHA384 string    `json:"rootfs_sha384,omitempty"`
	RootfsSize   int64     `json:"rootfs_size,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// CreateImageRequest is the body of POST /v1/images; both blobs must have
// been uploaded with PUT /v1/blobs/{sha384} first.
type CreateImageRequest struct {
	Name          string `json:"name"`
	KernelSHA384  string `json:"kernel_sha384"`
	InitrdSHA384  string `json:"initrd_sha384"`
	Cmdline       string `json:"cmdline"`
	KernelVersion string `json:"kernel_version,omitempty"`
	// RootfsSHA384, optional, is an uploaded root filesystem archive
	// (see Image.RootfsSHA384).
	RootfsSHA384 string `json:"rootfs_sha384,omitempty"`
}

// CreateImageResponse says whether the image was new.
type CreateImageResponse struct {
	Image   Image `json:"image"`
	Created bool  `json:"created"`
}

// AgentReport is what the in-guest agent last reported of its boot. It
// is the API's own copy of the agent's report, converted where azoted
// reads it, so that a change to the agent's line format cannot change
// the public JSON.
type AgentReport struct {
	// Event is the agent's last event (ready, error).
	Event string `json:"event"`
	// Instance is the azote.instance= value from the kernel command line.
	Instance string `json:"instance,omitempty"`
	// Root is the device mounted as / when the root is a volume.
	Root string `json:"root,omitempty"`
	// InitMs is the time from kernel start to the agent (PID 1) starting,
	// ReadyMs from kernel start to ready, both CLOCK_BOOTTIME.
	InitMs  int64 `json:"init_ms,omitempty"`
	ReadyMs int64 `json:"ready_ms,omitempty"`
	// VCPUs is the number of online CPUs the guest sees.
	VCPUs int `json:"vcpus,omitempty"`
	// MemTotalKiB is MemTotal from the guest's /proc/meminfo; MemRAMKiB
	// is the sum of the "System RAM" ranges the firmware handed it.
	MemTotalKiB int64 `json:"mem_total_kib,omitempty"`
	MemRAMKiB   int64 `json:"mem_ram_kib,omitempty"`
	// Modules is the number of kernel modules loaded.
	Modules int `json:"modules,omitempty"`
	// Message explains an error event.
	Message string `json:"message,omitempty"`
}

// HostInfo is GET /v1/host: the host's hardware as azoted read it at
// start (memory available is read on each call), and its engine.
type HostInfo struct {
	CPUModel    string `json:"cpu_model"`
	Cores       int    `json:"cores"`
	MemTotalMiB int64  `json:"mem_total_mib"`
	MemAvailMiB int64  `json:"mem_available_mib"`
	// HardwareVirt tells whether KVM can boot a guest here; VirtReason
	// says why not.
	HardwareVirt bool   `json:"hardware_virtualization"`
	VirtReason   string `json:"hardware_virtualization_reason"`
	AESNI        bool   `json:"aes_ni"`
	AVX2         bool   `json:"avx2"`
	// Kernel is the host kernel's release.
	Kernel string `json:"kernel"`
	// Engine is the VMM (qemu), Accel its accelerator (kvm, tcg).
	Engine  string `json:"engine"`
	Accel   string `json:"accel"`
	Version string `json:"azoted_version"`
}

// LookupEventsRequest is the body of audit:LookupEvents.
type LookupEventsRequest struct {
	Principal  string    `json:"Principal,omitempty"`
	EventName  string    `json:"EventName,omitempty"`
	Resource   string    `json:"Resource,omitempty"`
	ErrorCode  string    `json:"ErrorCode,omitempty"`
	OnlyErrors bool      `json:"OnlyErrors,omitempty"`
	StartTime  time.Time `json:"StartTime,omitzero"`
	EndTime    time.Time `json:"EndTime,omitzero"`
	Limit      int       `json:"Limit,omitempty"`
}

// ListLogFilesRequest is the body of audit:ListLogFiles: files whose path
// sorts after After.
type ListLogFilesRequest struct {
	After string `json:"After,omitempty"`
}

// ValidateLogsRequest is the body of audit:ValidateLogs. Rotate first
// closes the current log file and writes a digest, so that everything up
// to now is covered.
type ValidateLogsRequest struct {
	StartTime time.Time `json:"StartTime,omitzero"`
	EndTime   time.Time `json:"EndTime,omitzero"`
	Rotate    bool      `json:"Rotate,omitempty"`
}

// Limits of resource tags (those of AWS).
const (
	MaxTags        = 50
	MaxTagKeyLen   = 128
	MaxTagValueLen = 256
)

// ValidateTags checks resource tags: at most MaxTags, keys 1 to 128 and
// values up to 256 printable characters, no key in the reserved aws: and
// azote: namespaces, and no two keys that differ only in case.
func ValidateTags(tags map[string]string) *Error {
	if len(tags) > MaxTags {
		return Errorf(CodeInvalidParameter, "%d tags: at most %d", len(tags), MaxTags)
	}
	if a, b, ok := FoldedTagKeys(tags); ok {
		return Errorf(CodeDuplicateTagKeys, "tag keys %q and %q differ only in case: policies match tag keys case-insensitively", a, b)
	}
	printable := func(s string) bool {
		for _, c := range s {
			if c < 0x20 || c == 0x7f || c == utf8.RuneError {
				return false
			}
		}
		return true
	}
	for k, v := range tags {
		lk := strings.ToLower(k)
		switch {
		case k == "" || len(k) > MaxTagKeyLen || !printable(k):
			return Errorf(CodeInvalidParameter, "tag key %q: 1 to %d printable characters", k, MaxTagKeyLen)
		case strings.HasPrefix(lk, "aws:") || strings.HasPrefix(lk, "azote:"):
			return Errorf(CodeInvalidParameter, "tag key %q: the aws: and azote: prefixes are reserved", k)
		case len(v) > MaxTagValueLen || !printable(v):
			return Errorf(CodeInvalidParameter, "tag %q: the value must be at most %d printable characters", k, MaxTagValueLen)
		}
	}
	return nil
}

// FoldedTagKeys finds two keys of tags that are equal under Unicode case
// folding (as condition keys such as aws:ResourceTag/KEY are compared),
// the first such pair in sorted order.
func FoldedTagKeys(tags map[string]string) (string, string, bool) {
	if len(tags) < 2 {
		return "", "", false
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, a := range keys {
		for _, b := range keys[i+1:] {
			if strings.EqualFold(a, b) {
				return a, b, true
			}
		}
	}
	return "", "", false
}
