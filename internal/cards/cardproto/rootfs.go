package cardproto

import (
	"io"

	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/keymem"
)

// A rootfs card (KindRootfs) fills a new root volume from an image's
// initramfs and exits. It inherits the archive (FDArchive), the
// destination volume file (FDOut, already at its final size), an empty
// work directory (FDWork) and the private channel (FDChannel), on which
// azoted sends one message: the volume's data key (empty for a plaintext
// volume). The card builds the filesystem into an unnamed file of its own
// (O_TMPFILE in its work directory), encrypts it into the volume file
// itself, and writes one RootfsReport on stdout. azoted never reads a
// byte of the plaintext: it holds no descriptor to it, and nothing of it
// has a name.

// RootfsResult is what a rootfs card did.
type RootfsResult struct {
	image.ExtractStats
	// Status holds the card's credential lines from /proc/self/status
	// (Uid, Gid, Groups, Cap*, NoNewPrivs) as it saw them after confining
	// itself, and UIDMap its uid_map, for the record.
	Status map[string]string `json:"status"`
	UIDMap string            `json:"uid_map"`
	// Encrypted says the card wrote ciphertext (it was given a key).
	Encrypted bool `json:"encrypted"`
}

// RootfsReport is the one JSON line a rootfs card writes on stdout.
type RootfsReport struct {
	RootfsResult
	Refused string `json:"refused,omitempty"` // the archive was refused: why
	Error   string `json:"error,omitempty"`
}

// SendRootfs sends a rootfs card its data key (nil: a plaintext volume).
func SendRootfs(w io.Writer, key []byte) error { return Write(w, key) }

// ReceiveRootfs reads what SendRootfs sent, into locked memory (nil for
// a plaintext volume) that the caller frees.
func ReceiveRootfs(r io.Reader) (*keymem.Buf, error) { return ReadSecret(r) }
