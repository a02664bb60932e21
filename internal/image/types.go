package image

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// SHA384Hex returns the lowercase hex SHA-384 of b.
func SHA384Hex(b []byte) string {
	s := sha512.Sum384(b)
	return hex.EncodeToString(s[:])
}

// ID derives the content address of an image from its three digests: the
// same kernel, initramfs and command line always give the same id.
func ID(kernelSHA, initrdSHA, cmdlineSHA string) string {
	return "img-" + SHA384Hex([]byte(kernelSHA + "\n" + initrdSHA + "\n" + cmdlineSHA))[:17]
}

// IDWithRootfs is ID for an image that also has a root filesystem
// archive; without one it is ID, so existing ids do not change.
func IDWithRootfs(kernelSHA, initrdSHA, cmdlineSHA, rootfsSHA string) string {
	if rootfsSHA == "" {
		return ID(kernelSHA, initrdSHA, cmdlineSHA)
	}
	return "img-" + SHA384Hex([]byte(kernelSHA + "\n" + initrdSHA + "\n" + cmdlineSHA + "\n" + rootfsSHA))[:17]
}

var (
	nameRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)
	digestRE = regexp.MustCompile(`^[0-9a-f]{96}$`)
)

// ErrInvalid marks a malformed image request.
var ErrInvalid = errors.New("image: invalid")

// ValidName checks an image (or instance) name: 1–63 characters of
// letters, digits, '.', '_' and '-', starting with a letter or digit.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidDigest checks a lowercase hex SHA-384.
func ValidDigest(s string) bool { return digestRE.MatchString(s) }

// MaxCmdline bounds the kernel command line (the x86 boot protocol allows
// 2048 bytes including the terminator on current kernels).
const MaxCmdline = 2047

func validCmdline(s string) error {
	if len(s) > MaxCmdline {
		return fmt.Errorf("%w: command line of %d bytes exceeds %d", ErrInvalid, len(s), MaxCmdline)
	}
	if strings.ContainsAny(s, "\x00\n\r") {
		return fmt.Errorf("%w: command line contains a control character", ErrInvalid)
	}
	return nil
}

// ValidCmdline is exported for the controller's request validation.
func ValidCmdline(s string) error { return validCmdline(s) }
