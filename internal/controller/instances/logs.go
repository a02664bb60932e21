package instances

import (
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/engine"
)

// Cards and engines write their logs (stderr) to files azoted opens with
// O_APPEND and hands them. They outlive azoted and keep their fds, so a
// log cannot be rotated by renaming it: the child would write on into the
// renamed file. Instead, while azoted supervises the instance, every
// logBoundEvery it cuts the head of each log that has grown past
// Config.LogLimit, keeping its last LogLimit bytes (to a block): with
// FALLOC_FL_COLLAPSE_RANGE where the file system has it (ext4, xfs), which
// shrinks the file, else by punching a hole over the head, which frees its
// blocks. An O_APPEND write lands at the end either way, so nothing the
// child writes meanwhile is lost. Blocks allocated past the end, which the
// size does not show, are freed too (freePastEnd). A noisy child (a guest making its card
// or QEMU log an error per request) can therefore hold at most LogLimit
// plus what it writes in logBoundEvery per log, not the disk.

// cardLogSuffix ends the log file of a card: <volume id>.card.log.
const cardLogSuffix = ".card.log"

func cardLogPath(dir, volID string) string { return filepath.Join(dir, volID+cardLogSuffix) }

// boundLog keeps the last limit bytes (to a 4 KiB block) of the log at
// path and drops the rest, including any blocks allocated past its end.
func boundLog(path string, limit int64) error { return boundFile(path, limit, cutHead) }

// boundFile bounds the file at path to about limit bytes on disk: dropHead
// drops all but its last limit bytes, then freePastEnd frees the blocks
// allocated past its end. A file that does not exist (yet) is bounded.
func boundFile(path string, limit int64, dropHead func(f *os.File, limit int64) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	if err := dropHead(f, limit); err != nil {
		return err
	}
	return freePastEnd(f, limit)
}

func cutHead(f *os.File, limit int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	cut := (st.Size() - limit) &^ 4095
	if cut <= 0 {
		return nil
	}
	if unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, cut) == nil {
		return nil
	}
	// No collapse here (tmpfs, btrfs), or the file changed under us: free
	// the blocks instead. The size keeps growing; a sparse file holds it.
	var blocks unix.Stat_t
	if unix.Fstat(int(f.Fd()), &blocks) == nil && blocks.Blocks*512 <= limit+4096 {
		return nil // already bounded (holes punched before)
	}
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, cut)
}

// pastEndSlack is how many bytes a log or console may hold in blocks
// beyond what it should (file system metadata, a block being written)
// before freePastEnd looks for blocks past its end.
const pastEndSlack = 64 << 10

// freePastEnd frees the blocks of f allocated past its end. A writer that
// preallocates (fallocate with FALLOC_FL_KEEP_SIZE) holds blocks the size
// does not show, so cutting by the size alone would free none of them:
// f, bounded to limit, should hold at most about min(size, limit) bytes,
// and when it holds more, the blocks past the end are punched out (tmpfs,
// xfs, btrfs) or, where punching stops at the end (ext4), truncated away
// by truncating the file to its own size. A line the writer appends in
// the same instant may be lost; only a writer that allocated past its
// end (which azote's cards and QEMU never do) makes this happen.
func freePastEnd(f *os.File, limit int64) error {
	fd := int(f.Fd())
	excess := func() (bool, int64, error) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return false, 0, err
		}
		return st.Blocks*512 > min(st.Size, limit)+pastEndSlack, st.Size, nil
	}
	over, size, err := excess()
	if err != nil || !over {
		return err
	}
	// File systems whose largest file is smaller than the largest offset
	// answer EFBIG (ext4, which frees nothing past the end this way
	// anyway).
	from := (size + 4095) &^ 4095
	err = unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, from, math.MaxInt64-from)
	if err != nil && !errors.Is(err, unix.EFBIG) && !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	if over, size, err = excess(); err != nil || !over {
		return err
	}
	return unix.Ftruncate(fd, size)
}

// cardLogRoom is the apparent size a card's log may reach (azote-card blk
// --log-room): a card cannot write any file past the larger of this and
// its volume's size (RLIMIT_FSIZE), so a volume smaller than this may grow
// by up to it past its quota. The log's size stays near limit where the
// head can be collapsed; elsewhere it only grows while the card runs, and
// renewLog starts it again small each time the card starts.
func cardLogRoom(limit int64) int64 { return max(64<<20, 64*limit) }

// renewLog replaces the log at path, if its size passed over, by a new
// file holding its last limit bytes. Only while no child holds the log
// (a card about to start): a writer would go on into the old file.
func renewLog(path string, limit, over int64) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() <= over {
		return nil
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, logTail(path, limit), 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// boundInstanceLogs bounds the engine log and every card log of an
// instance.
func (s *Service) boundInstanceLogs(id string) {
	dir := s.instanceDir(id)
	paths, _ := filepath.Glob(filepath.Join(dir, "*"+cardLogSuffix))
	paths = append(paths, filepath.Join(dir, engine.LogName))
	for _, p := range paths {
		if err := boundLog(p, s.cfg.LogLimit); err != nil {
			s.log.Warn("bounding a log", "id", id, "log", filepath.Base(p), "err", err)
		}
	}
}

// logTail returns the last n bytes of the log at path, reading only them
// (a log's head may be a hole of any apparent size).
func logTail(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	k, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return b[:k]
}
