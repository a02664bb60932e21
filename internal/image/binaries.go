package image

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// libDirs are where a Debian amd64 system keeps shared libraries.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib", "/lib"}

// addBinaries copies each host executable to /bin, with the transitive
// DT_NEEDED libraries and the program interpreter at their host paths, so
// a dynamically linked tool runs in the initramfs unchanged. The tools go
// to /usr/local/bin, which the agent puts before busybox's /bin in PATH.
func addBinaries(w *cpioWriter, mkdirs func(string), bins []string) error {
	if len(bins) == 0 {
		return nil
	}
	files := map[string]bool{}
	var visit func(p string) error
	visit = func(p string) error {
		if files[p] {
			return nil
		}
		files[p] = true
		f, err := elf.Open(p)
		if err != nil {
			return fmt.Errorf("image: %s: %w", p, err)
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				prog.ReadAt(b, 0)
				interp := string(b[:len(b)-1])
				if err := visit(interp); err != nil {
					return err
				}
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return nil // static
		}
		for _, lib := range libs {
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("image: %s needs %s, not found in %v", p, lib, libDirs)
			}
			if err := visit(found); err != nil {
				return err
			}
		}
		return nil
	}
	for _, b := range bins {
		if err := visit(b); err != nil {
			return err
		}
	}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(real)
		if err != nil {
			return err
		}
		dst := p[1:] // libraries and the loader keep their host paths
		for _, b := range bins {
			if b == p {
				dst = "usr/local/bin/" + filepath.Base(p)
			}
		}
		mkdirs(dst)
		w.File(dst, 0o755, data)
	}
	for _, b := range bins {
		// mke2fs also answers as mkfs.ext4 when called by that name.
		if filepath.Base(b) == "mke2fs" {
			mkdirs("usr/local/bin/mkfs.ext4")
			w.Symlink("usr/local/bin/mkfs.ext4", "mke2fs")
		}
	}
	return nil
}
