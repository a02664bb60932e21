package durable

import (
	"os"
	"path/filepath"
)

// WriteFile makes path hold exactly data with permissions mode, replacing
// any file there: it writes a new file next to path, fsyncs it, renames it
// over path and fsyncs the directory, so that the rename itself is on disk
// when WriteFile returns.
//
// The mode is set on the file (not filtered by the umask) before a byte of
// data is written, so a secret is never readable by more than mode allows.
// A crash between the create and the rename can leave a hidden temporary
// file (".NAME.tmp-*") beside path, with mode already applied.
func WriteFile(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp opens with O_CREATE|O_EXCL under a random name: a link
	// planted at a predictable name cannot redirect the write.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, which is what makes a rename in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
