package image

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultModules are the guest drivers every image carries: the virtio PCI
// and MMIO transports (QEMU and azote-hv), and the block, network and vsock
// devices that azote's cards serve.
var DefaultModules = []string{
	"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "vmw_vsock_virtio_transport",
}

// ErrUnknownModule is returned for a module the kernel tree does not have.
var ErrUnknownModule = errors.New("image: unknown kernel module")

// moduleTree indexes one kernel's /lib/modules/<version> directory.
type moduleTree struct {
	root    string            // .../lib/modules/<version>
	paths   map[string]string // module name → path relative to root
	builtin map[string]bool
}

func normModName(s string) string { return strings.ReplaceAll(s, "-", "_") }

func openModuleTree(root string) (*moduleTree, error) {
	t := &moduleTree{root: root, paths: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(root, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(root, p)
			t.paths[normModName(strings.TrimSuffix(d.Name(), ".ko"))] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image: index modules: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			t.builtin[normModName(strings.TrimSuffix(filepath.Base(l), ".ko"))] = true
		}
	}
	return t, nil
}

// modinfoDepends reads the depends= entry of a module's .modinfo section.
func modinfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, normModName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// resolve returns the paths (relative to the tree root) of the named
// modules and everything they depend on, dependencies first. Built-in
// modules are skipped.
func (t *moduleTree) resolve(names []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = normModName(name)
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("image: module dependency cycle: %s", strings.Join(append(chain, name), " → "))
		}
		if t.builtin[name] {
			state[name] = 2
			return nil
		}
		rel, ok := t.paths[name]
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownModule, name)
		}
		state[name] = 1
		deps, err := modinfoDepends(filepath.Join(t.root, rel))
		if err != nil {
			return fmt.Errorf("image: module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}
