package engine

import (
	"context"
	"errors"
	"time"

	"github.com/azote/azote/internal/agent"
)

// Spec is what the controller asks an engine to run.
type Spec struct {
	InstanceID string
	Dir        string // private runtime directory of the instance, mode 0700
	Kernel     string // path of the kernel image
	Initrd     string // path of the initramfs
	Cmdline    string
	VCPUs      int
	MemoryMiB  int
	// ConsolePath is where the guest's serial console is appended.
	ConsolePath string
	// Devices are the guest's devices that cards serve over vhost-user,
	// in guest order within each kind (blk: vda, vdb, …).
	Devices []Device
	// UID is the user (and group) the engine runs as, one of its own; 0
	// runs it as root (an engine started before uids were given).
	UID int
}

// DeviceKind says what a device is to the guest, and so which card
// serves it.
type DeviceKind string

// Device kinds.
const (
	DeviceBlk DeviceKind = "blk" // virtio-blk, served by a blk card
	DeviceNet DeviceKind = "net" // virtio-net, served by a net card
)

// Device is one guest device a card serves over vhost-user.
type Device struct {
	Kind   DeviceKind
	ID     string // what it serves (the volume or interface id)
	Socket string // the card's vhost-user socket, inside Spec.Dir
	// Queues: for blk, request queues; for net, queue pairs.
	Queues int
	// MAC is a net device's address, which the engine shows the guest
	// (QEMU keeps its own copy of the configuration space).
	MAC string
}

// ErrDeviceKind is returned for a device of a kind the engine cannot
// attach.
var ErrDeviceKind = errors.New("engine: unsupported device kind")

// Handle is what the controller persists to re-adopt a running machine.
type Handle struct {
	Engine    string `json:"engine"`
	Accel     string `json:"accel"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // clock ticks after boot, /proc/<pid>/stat field 22
	Dir       string `json:"dir"`
	UID       int    `json:"uid,omitempty"` // Spec.UID
}

// Exit says how a machine ended.
type Exit struct {
	// Clean is true when the guest powered itself off or the host quit it
	// on purpose; false for a crash or a kill.
	Clean  bool
	Reason string
}

// Errors shared by engines.
var (
	ErrGone       = errors.New("engine: machine process is gone")
	ErrNotRunning = errors.New("engine: machine is not running")
)

// Engine starts and re-adopts machines.
type Engine interface {
	Name() string
	// Accel names the accelerator in use ("kvm", "tcg").
	Accel() string
	// Launch starts a machine. On error nothing is left running.
	Launch(ctx context.Context, s Spec) (Machine, error)
	// Adopt attaches to a machine started earlier (by a previous azoted).
	// It returns ErrGone when that process no longer exists.
	Adopt(h Handle, s Spec) (Machine, error)
	// Sweep kills every process of this engine that belongs to the
	// instance, for repairing a launch a crash interrupted. It returns how
	// many it killed.
	Sweep(instanceID string) int
}

// Machine is one running guest.
type Machine interface {
	Handle() Handle
	// Done is closed when the engine process has exited; Exit is valid then.
	Done() <-chan struct{}
	Exit() Exit
	// Resets delivers a value each time the guest resets (reboots).
	// The value is when the engine reset the machine (its own clock, not
	// when the event was read), so late delivery cannot be mistaken for a
	// later reset.
	Resets() <-chan time.Time
	// Command sends a line to the guest agent's control port.
	Command(ctx context.Context, cmd string) error
	// Exec opens an exec session with the guest agent over the same
	// port. It returns agent.ErrAgentUnavailable when no agent answers
	// within agent.OpenTimeout.
	Exec(ctx context.Context, req agent.OpenRequest) (*agent.Session, error)
	// Quit ends the machine at once from the host side (like pulling power).
	Quit(ctx context.Context) error
	// Kill sends SIGKILL to the engine process.
	Kill() error
	// Release stops watching the machine without ending it (azoted is
	// shutting down and will re-adopt it).
	Release()
}
