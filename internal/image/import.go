package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Offsets of the x86 boot protocol's setup header
// (Documentation/arch/x86/boot.rst).
const (
	bzMagicOff   = 0x202 // "HdrS"
	bzVersionOff = 0x206 // boot protocol version, u16
	bzKverOff    = 0x20e // kernel_version: offset of a NUL-terminated string, minus 0x200
)

// CheckBzImage tells whether b is an x86 bzImage (the "HdrS" magic of
// the setup header at 0x202) and returns the kernel's version string,
// when it carries one, cut at its first space ("6.1.0-57-cloud-amd64").
func CheckBzImage(b []byte) (string, error) {
	if len(b) < 0x260 || !bytes.Equal(b[bzMagicOff:bzMagicOff+4], []byte("HdrS")) {
		return "", fmt.Errorf("%w: not an x86 bzImage kernel (no HdrS magic at 0x202)", ErrInvalid)
	}
	if binary.LittleEndian.Uint16(b[bzVersionOff:]) < 0x0206 {
		return "", fmt.Errorf("%w: boot protocol %#x is older than 2.06", ErrInvalid, binary.LittleEndian.Uint16(b[bzVersionOff:]))
	}
	off := int(binary.LittleEndian.Uint16(b[bzKverOff:])) + 0x200
	if off <= 0x200 || off >= len(b) {
		return "", nil
	}
	s := b[off:min(len(b), off+128)]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if i := bytes.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	for _, c := range s {
		if c < 0x21 || c > 0x7e {
			return "", nil
		}
	}
	return string(s), nil
}

// LoadImport reads a kernel and an initramfs given by the user for
// `azote image import` and checks them before anything is uploaded: both
// readable and within MaxBlobSize, the kernel a bzImage, the initramfs
// not empty, the command line valid.
func LoadImport(kernelPath, initrdPath, cmdline string) (*Artifacts, error) {
	if err := validCmdline(cmdline); err != nil {
		return nil, err
	}
	kernel, err := readBlobFile("kernel", kernelPath)
	if err != nil {
		return nil, err
	}
	version, err := CheckBzImage(kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", kernelPath, err)
	}
	initrd, err := readBlobFile("initramfs", initrdPath)
	if err != nil {
		return nil, err
	}
	if len(initrd) == 0 {
		return nil, fmt.Errorf("%w: initramfs %s is empty", ErrInvalid, initrdPath)
	}
	return &Artifacts{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, KernelVersion: version}, nil
}

func readBlobFile(what, p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxBlobSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, p, err)
	}
	if len(b) > MaxBlobSize {
		return nil, fmt.Errorf("%w: %s %s is over %d MiB", ErrInvalid, what, p, MaxBlobSize>>20)
	}
	return b, nil
}
