package image

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// debCache fetches Debian packages with apt-get download and unpacks them
// with dpkg-deb, without installing anything on the host.
type debCache struct {
	dir      string
	progress func(string)
	cached   bool // a cached copy is good enough: do not ask the archive
}

// fetch downloads pkg (a name, optionally name=version) into the cache and
// returns the .deb path. When the archive cannot be reached, a previously
// cached copy of the same package is used instead.
func (c *debCache) fetch(pkg string) (string, error) {
	dir := filepath.Join(c.dir, "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name, _, _ := strings.Cut(pkg, "=")
	before, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if c.cached && name == pkg && len(before) > 0 { // a pinned version is looked up
		return newest(before), nil
	}
	cmd := exec.Command("apt-get", "download", "-q", pkg)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	after, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if err != nil {
		if len(after) > 0 {
			c.progress(fmt.Sprintf("apt-get download %s failed, using cached %s", pkg, filepath.Base(newest(after))))
			return newest(after), nil
		}
		return "", fmt.Errorf("image: apt-get download %s: %v: %s", pkg, err, lastLine(out))
	}
	// The file apt-get just wrote is the one that is new or most recent.
	for _, p := range after {
		if !contains(before, p) {
			return p, nil
		}
	}
	if len(after) == 0 {
		return "", fmt.Errorf("image: apt-get download %s wrote no file", pkg)
	}
	return newest(after), nil
}

// depends returns the Depends field of a .deb.
func depends(deb string) ([]string, error) {
	out, err := exec.Command("dpkg-deb", "-f", deb, "Depends").Output()
	if err != nil {
		return nil, fmt.Errorf("image: dpkg-deb -f %s: %w", deb, err)
	}
	var deps []string
	for _, d := range strings.Split(string(out), ",") {
		d = strings.TrimSpace(d)
		name, _, _ := strings.Cut(d, " ")
		if name != "" {
			deps = append(deps, name)
		}
	}
	return deps, nil
}

// extract unpacks deb once into the cache and returns the directory.
func (c *debCache) extract(deb string) (string, error) {
	dst := filepath.Join(c.dir, "root", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	done := filepath.Join(dst, ".azote-extracted")
	if _, err := os.Stat(done); err == nil {
		return dst, nil
	}
	tmp := dst + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("image: dpkg-deb -x %s: %v: %s", deb, err, lastLine(out))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".azote-extracted"), nil, 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dst)
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// kernelPackage resolves a metapackage such as linux-image-cloud-amd64 to
// the versioned kernel package it depends on, fetches and unpacks it.
func (c *debCache) kernelPackage(pkg string) (root, version string, err error) {
	c.progress("fetching " + pkg)
	deb, err := c.fetch(pkg)
	if err != nil {
		return "", "", err
	}
	root, err = c.extract(deb)
	if err != nil {
		return "", "", err
	}
	if v, ok := kernelVersion(root); ok {
		return root, v, nil
	}
	// A metapackage: follow its linux-image-* dependency.
	deps, err := depends(deb)
	if err != nil {
		return "", "", err
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "linux-image-") && d != pkg {
			return c.kernelPackage(d)
		}
	}
	return "", "", fmt.Errorf("image: %s holds no kernel and depends on none", pkg)
}

// kernelVersion finds the single /lib/modules/<version> with a matching
// /boot/vmlinuz-<version> under root.
func kernelVersion(root string) (string, bool) {
	ms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(ms) != 1 {
		return "", false
	}
	v := strings.TrimPrefix(filepath.Base(ms[0]), "vmlinuz-")
	if _, err := os.Stat(filepath.Join(root, "lib", "modules", v)); err != nil {
		return "", false
	}
	return v, true
}

func newest(paths []string) string {
	sort.Slice(paths, func(i, j int) bool {
		a, _ := os.Stat(paths[i])
		b, _ := os.Stat(paths[j])
		return a != nil && b != nil && a.ModTime().Before(b.ModTime())
	})
	return paths[len(paths)-1]
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func lastLine(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(lines[len(lines)-1])
}
