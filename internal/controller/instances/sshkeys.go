package instances

import (
	"errors"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// A guest's agent reports its SSH host public keys on the console at
// each boot (agent.EventHostKey), as EC2 users read them from the
// console output; they are what `azote instance ssh` trusts. The console
// is the guest's to write, so what a guest can make azoted keep is
// bounded: at most MaxSSHHostKeys keys, each a valid public key of at
// most MaxSSHHostKeyLen bytes, kept without its comment. A launch and a
// guest reset start an empty set, so the set is the current boot's.

// Bounds of the host keys kept per instance.
const (
	MaxSSHHostKeys   = 8
	MaxSSHHostKeyLen = 1 << 10
)

// errUnchanged ends an update that has nothing to change.
var errUnchanged = errors.New("unchanged")

// ParseSSHHostKey reads one reported host key ("ssh-ed25519 AAAA…
// [comment]") and returns it as kept ("ssh-ed25519 AAAA…"), or false.
func ParseSSHHostKey(msg string) (string, bool) {
	if len(msg) > MaxSSHHostKeyLen {
		return "", false
	}
	pub, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(msg))
	if err != nil || len(opts) > 0 || strings.TrimSpace(string(rest)) != "" {
		return "", false
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), true
}

// recordHostKey adds a reported host key to the current boot's set.
// Already known keys and keys past the bound cost no write.
func (s *Service) recordHostKey(id, msg string, now time.Time, rs *reports) {
	key, ok := ParseSSHHostKey(msg)
	if !ok {
		if rs.allow(now) {
			s.log.Warn("agent reported an unreadable SSH host key", "id", id)
		}
		return
	}
	if slices.Contains(rs.hostKeys, key) || len(rs.hostKeys) >= MaxSSHHostKeys {
		return
	}
	_, err := s.update(id, func(r *instanceRecord) error {
		if slices.Contains(r.SSHHostKeys, key) || len(r.SSHHostKeys) >= MaxSSHHostKeys {
			return errUnchanged
		}
		r.SSHHostKeys = append(r.SSHHostKeys, key)
		return nil
	})
	if err == nil || errors.Is(err, errUnchanged) {
		rs.hostKeys = append(rs.hostKeys, key)
	}
}
