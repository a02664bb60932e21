package rootfs

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/image"
)

// maxMember is image.ExtractInitramfs's limit on one archive member.
const maxMember = 256 << 20

// testHookConfined, set only by this package's tests, runs in the helper
// once it is confined, before it reads the archive.
var testHookConfined func() error

// Main is `azote-card rootfs`, started by Run: it confines itself, then
// extracts the archive and runs mke2fs. It writes one JSON report on
// stdout and exits 0 on success, 1 otherwise.
func Main(args []string) int {
	fs := flag.NewFlagSet("azote-card rootfs", flag.ContinueOnError)
	archiveFD := fs.Int("archive-fd", fdArchive, "inherited descriptor of the gzip'd newc initramfs")
	outFD := fs.Int("out-fd", fdOut, "inherited descriptor of the file to hold the filesystem")
	workFD := fs.Int("work-fd", fdWork, "inherited descriptor of the (empty) work directory")
	uid := fs.Int("uid", -1, "host uid the namespace's root must map to")
	mke2fs := fs.String("mke2fs", "", "absolute path of mke2fs")
	isConfined := fs.Bool("confined", false, "set by the helper when it execs itself confined")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var res Result
	var err error
	if !*isConfined {
		// Returns only on error; the exec'd helper reports.
		err = fmt.Errorf("confining the helper: %w", confine(*uid, *mke2fs, append(os.Args[:len(os.Args):len(os.Args)], "--confined")))
	} else {
		res, err = build(*archiveFD, *outFD, *workFD, *uid, *mke2fs)
	}
	rep := report{Result: res}
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

func build(archiveFD, outFD, workFD, uid int, mke2fs string) (Result, error) {
	var res Result
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
	archive, out := os.NewFile(uintptr(archiveFD), "archive"), os.NewFile(uintptr(outFD), "out")
	if archive == nil || out == nil {
		return res, fmt.Errorf("missing archive or output descriptor")
	}
	fi, err := out.Stat()
	if err != nil {
		return res, err
	}
	// No file the helper (or mke2fs) writes may grow past the output's
	// size or the extractor's limit on one member, whatever goes wrong.
	lim := uint64(max(fi.Size(), maxMember))
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
	// mke2fs opens its device by name: its descriptor 3, which is out.
	cmd := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-L", "azote-root",
		"-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", "root", "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{out}
	cmd.Env = []string{}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if b, err := cmd.Output(); err != nil {
		return res, fmt.Errorf("mke2fs: %v: %s", err, b)
	}
	return res, nil
}
