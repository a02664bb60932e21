package rootfs

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
	cardrt "github.com/azote/azote/internal/cards/runtime"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/xts"
)

// maxMember is image.ExtractInitramfs's limit on one archive member.
const maxMember = 256 << 20

// sectorSize is the unit the volume is encrypted in: the blk card's
// (aes-xts-plain64, the sector number of each 512 bytes as the tweak).
const sectorSize = 512

// testHookConfined, set only by this package's tests, runs in the helper
// once it is confined, before it reads the archive.
var testHookConfined func() error

// Main is `azote-card rootfs`, started by cardhost.RunRootfs: it confines
// itself, then extracts the archive, runs mke2fs into a file of its own
// and writes it, encrypted when it was given a key, into the volume file.
// It writes one JSON report on stdout and exits 0 on success, 1
// otherwise.
func Main(args []string) int {
	fs := flag.NewFlagSet("azote-card rootfs", flag.ContinueOnError)
	card := cardrt.New(cardproto.KindRootfs, fs)
	uid := fs.Int("uid", -1, "host uid the namespace's root must map to")
	mke2fs := fs.String("mke2fs", "", "absolute path of mke2fs")
	isConfined := fs.Bool("confined", false, "set by the helper when it execs itself confined")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var res cardproto.RootfsResult
	var err error
	if !*isConfined {
		// Returns only on error; the exec'd helper reports.
		err = fmt.Errorf("confining the helper: %w", confine(*uid, *mke2fs, append(os.Args[:len(os.Args):len(os.Args)], "--confined")))
	} else {
		res, err = build(card, *uid, *mke2fs)
	}
	rep := cardproto.RootfsReport{RootfsResult: res}
	switch {
	case errors.Is(err, image.ErrArchive):
		rep.Refused = strings.TrimPrefix(err.Error(), image.ErrArchive.Error()+": ")
	case err != nil:
		rep.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	if err != nil {
		return 1
	}
	return 0
}

func build(card *cardrt.Card, uid int, mke2fs string) (cardproto.RootfsResult, error) {
	var res cardproto.RootfsResult
	// Nothing from the archive is read before this returns.
	status, uidMap, err := confined(uid)
	res.Status, res.UIDMap = status, uidMap
	if err != nil {
		return res, fmt.Errorf("confining the helper: %w", err)
	}
	if testHookConfined != nil {
		if err := testHookConfined(); err != nil {
			return res, err
		}
	}
	ch, err := card.File(cardproto.FDChannel)
	if err != nil {
		return res, err
	}
	key, err := cardproto.ReceiveRootfs(ch)
	ch.Close()
	if err != nil {
		return res, fmt.Errorf("reading the channel: %w", err)
	}
	defer key.Free()
	var cipher *xts.Cipher
	if key != nil {
		c, release, err := cardrt.VolumeCipher(key.Bytes())
		key.Free()
		if err != nil {
			return res, fmt.Errorf("volume key: %w", err)
		}
		defer release()
		cipher, res.Encrypted = c, true
	}
	archive, err := card.File(cardproto.FDArchive)
	if err != nil {
		return res, err
	}
	out, err := card.File(cardproto.FDOut)
	if err != nil {
		return res, err
	}
	workFD, err := card.FD(cardproto.FDWork)
	if err != nil {
		return res, err
	}
	fi, err := out.Stat()
	if err != nil {
		return res, err
	}
	size := fi.Size()
	// No file the helper (or mke2fs) writes may grow past the volume's
	// size or the extractor's limit on one member, whatever goes wrong.
	lim := uint64(max(size, maxMember))
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
		return res, fmt.Errorf("file size limit: %w", err)
	}
	// Every path below is relative to the work directory.
	if err := unix.Fchdir(workFD); err != nil {
		return res, fmt.Errorf("entering the work directory: %w", err)
	}
	unix.Close(workFD)
	if err := os.Mkdir("root", 0o755); err != nil {
		return res, err
	}
	root, err := os.OpenFile("root", os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return res, err
	}
	defer root.Close()
	res.ExtractStats, err = image.ExtractInitramfs(archive, root)
	archive.Close()
	if err != nil {
		return res, err
	}
	plain, err := plainFile(size)
	if err != nil {
		return res, fmt.Errorf("the filesystem's scratch file: %w", err)
	}
	defer plain.Close()
	// mke2fs opens its device by name: its descriptor 3, which is plain.
	cmd := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-L", "azote-root",
		"-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", "root", "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{plain}
	cmd.Env = []string{}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if b, err := cmd.Output(); err != nil {
		return res, fmt.Errorf("mke2fs: %v: %s", err, b)
	}
	if err := copySectors(out, plain, size, cipher); err != nil {
		return res, fmt.Errorf("writing the volume: %w", err)
	}
	if err := out.Sync(); err != nil {
		return res, fmt.Errorf("writing the volume: %w", err)
	}
	return res, nil
}

// plainFile makes the file mke2fs writes the filesystem into: unnamed
// (O_TMPFILE) in the work directory, so that the plaintext has no name
// anyone could open, and the kernel frees it when the helper exits,
// however it exits. A filesystem without O_TMPFILE gets a file unlinked
// at once.
func plainFile(size int64) (*os.File, error) {
	f, err := os.OpenFile(".", os.O_RDWR|unix.O_TMPFILE, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) {
		if f, err = os.OpenFile("plain", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			err = os.Remove("plain")
		}
	}
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// copySectors writes size bytes of src into dst at the same offsets,
// encrypted with c when it is not nil. Holes (zeros) are written too:
// encrypted, zeros are not zeros.
func copySectors(dst, src *os.File, size int64, c *xts.Cipher) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), size-off)]
		if _, err := src.ReadAt(chunk, off); err == io.EOF {
			return fmt.Errorf("mke2fs left a file shorter than %d bytes", size)
		} else if err != nil {
			return err
		}
		if c != nil {
			if err := c.EncryptSectors(chunk, chunk, uint64(off/sectorSize), sectorSize); err != nil {
				return err
			}
		}
		if _, err := dst.WriteAt(chunk, off); err != nil {
			return err
		}
	}
	clear(buf)
	return nil
}
