package cardhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
)

// Refusals of a fill card: the stream was not what its sender declared.
var (
	// ErrFillLength is a stream shorter or longer than declared (an
	// upload cut short, or a client that lied).
	ErrFillLength = errors.New("fill: stream length is not the declared one")
	// ErrFillDigest is a stream whose SHA-256 is not the declared one.
	ErrFillDigest = errors.New("fill: stream digest is not the declared one")
)

// FillSpec is one imported disk to write into a new volume (the fill
// card: package internal/cards/fill).
type FillSpec struct {
	// Command runs the card: the binary and the argument that selects
	// it (`azote-card fill`).
	Command []string
	// UID is the uid and gid the card drops to before it reads the
	// stream; -1 keeps azoted's (tests that do not run as root).
	UID int
	// Out is the volume file, already at its final size. The card writes
	// it through this descriptor only.
	Out *os.File
	// Key is the volume's data key (in locked memory), nil for a
	// plaintext volume. It reaches the card over a private socketpair,
	// never argv, the environment or a file.
	Key []byte
	// Length and SHA256 (hex) are what the stream must be.
	Length int64
	SHA256 string
	// In is the stream: RunFill copies up to Length+1 bytes of it into
	// the card's pipe (the one byte more is how a longer stream is
	// caught) and keeps nothing.
	In io.Reader
	// Progress, if set, is called now and then with the bytes passed on.
	Progress func(n int64)
}

// RunFill fills Spec.Out with the fill card and waits for it. A stream
// that is not what was declared gives an error wrapping ErrFillLength or
// ErrFillDigest. Cancelling ctx kills the card. Whatever the card wrote
// of a failed fill is the caller's to remove.
//
// RunFill returns once the card has exited and the copy has stopped: a
// card that dies ends the copy at its next write (EPIPE); a reader that
// blocks holds RunFill until it returns (an upload's body has a read
// deadline).
func RunFill(ctx context.Context, s FillSpec) (cardproto.FillResult, error) {
	type Result = cardproto.FillResult
	if len(s.Command) == 0 || s.Out == nil || s.In == nil {
		return Result{}, fmt.Errorf("fill: no card command, volume file or stream")
	}
	ours, theirs, err := socketpair()
	if err != nil {
		return Result{}, err
	}
	defer ours.Close()
	defer theirs.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return Result{}, err
	}
	defer pr.Close()
	defer pw.Close()
	args := append(append([]string(nil), s.Command[1:]...), "--uid", strconv.Itoa(s.UID))
	cmd := exec.CommandContext(ctx, s.Command[0], args...)
	var d Donation
	d.Donate(cardproto.FDChannel, theirs)
	d.Donate(cardproto.FDOut, s.Out)
	d.Donate(cardproto.FDIn, pr)
	d.Apply(cmd)
	cmd.Env = []string{}
	var stdout, stderr bounded
	stdout.max, stderr.max = 64<<10, 4<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("fill: starting the card: %w", err)
	}
	theirs.Close()
	pr.Close()
	ours.SetWriteDeadline(time.Now().Add(10 * time.Second))
	sendErr := cardproto.SendFill(ours, cardproto.FillConfig{Length: s.Length, SHA256: s.SHA256}, s.Key)
	ours.Close()

	// The copy: the client's bytes go straight from the request into the
	// pipe, a buffer at a time, and nowhere else.
	type copied struct {
		n       int64
		readErr error
	}
	done := make(chan copied, 1)
	go func() {
		src := &readErrs{r: io.LimitReader(s.In, s.Length+1), progress: s.Progress}
		n, _ := io.CopyBuffer(pw, src, make([]byte, 256<<10))
		// The card learns the stream ended from the pipe's end.
		pw.Close()
		done <- copied{n, src.err}
	}()
	runErr := cmd.Wait()
	cp := <-done
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("filling the volume: %w", ctx.Err())
	}
	var rep cardproto.FillReport
	if err := json.Unmarshal(bytes.TrimSpace(stdout.b.Bytes()), &rep); err != nil {
		return Result{}, fmt.Errorf("fill card: %v; no report (%v): %s", runErr, err, stderr.b.Bytes())
	}
	switch {
	case cp.readErr != nil:
		// The upload broke off: whatever the card says, the stream was
		// short because its sender went away.
		return Result{}, fmt.Errorf("%w: the upload ended after %d of %d bytes: %v", ErrFillLength, cp.n, s.Length, cp.readErr)
	case rep.Refused == cardproto.FillDigest:
		return Result{}, fmt.Errorf("%w: %s", ErrFillDigest, rep.Message)
	case rep.Refused != "":
		return Result{}, fmt.Errorf("%w: %s", ErrFillLength, rep.Message)
	case rep.Error != "":
		return Result{}, fmt.Errorf("fill card: %s %s", rep.Error, bytes.TrimSpace(stderr.b.Bytes()))
	case runErr != nil:
		return Result{}, fmt.Errorf("fill card: %v: %s", runErr, stderr.b.Bytes())
	case sendErr != nil:
		return Result{}, fmt.Errorf("fill card: sending its key: %w", sendErr)
	case rep.Encrypted != (s.Key != nil):
		return Result{}, fmt.Errorf("fill card: reported encrypted=%v for a key of %d bytes", rep.Encrypted, len(s.Key))
	case rep.Bytes != s.Length:
		return Result{}, fmt.Errorf("fill card: reported %d bytes written of %d", rep.Bytes, s.Length)
	}
	return rep.FillResult, nil
}

// readErrs keeps the error of its reader apart from the copy's write
// errors (a card that died), and reports progress.
type readErrs struct {
	r        io.Reader
	err      error
	n        int64
	progress func(int64)
}

func (r *readErrs) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if r.progress != nil && n > 0 {
		r.progress(r.n)
	}
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
