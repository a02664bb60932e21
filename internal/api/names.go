package api

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
)

// NameRule is the rule every name of a compute noun (instance, volume,
// image, VPC, subnet, security group, network interface) follows, as a
// caller reads it in a refusal.
const NameRule = "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, and not in the form of an id"

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)
	// idRE is the shape of the ids NewID makes. A name of that shape is
	// refused, so that a reference by id is never shadowed by a name.
	idRE = regexp.MustCompile(`^(i|img|vol|vpc|subnet|sg|eni|key)-[0-9a-f]{17}$`)
)

// ValidName checks the name of a compute noun against NameRule.
func ValidName(s string) bool { return nameRE.MatchString(s) && !idRE.MatchString(s) }

// Prefixes of the ids of the compute nouns.
const (
	InstanceIDPrefix = "i-"
	VolumeIDPrefix   = "vol-"
	ImageIDPrefix    = "img-"
)

// IDLen is the length of an id NewID makes with prefix.
func IDLen(prefix string) int { return len(prefix) + 17 }

// NewID makes a random id: prefix and 17 hex digits (68 bits).
func NewID(prefix string) string {
	var b [9]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])[:17]
}
