package audit

import (
	"os"
	"syscall"
)

// datasync flushes a journal's data and its size, which is all a reader
// after a crash needs; fdatasync skips the timestamps fsync would also write.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
