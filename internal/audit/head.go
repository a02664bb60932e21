package audit

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/azote/azote/internal/durable"
)

// The journal head closes the last gap rotate.go leaves: a crash. With
// every group commit, after the journal's fdatasync and before the batch
// is acknowledged, the writer records the open journal's name, its
// acknowledged length and the SHA-256 of its bytes up to that length,
// MACed with a key only the signing key yields. At start-up a journal is
// finished only if its first length bytes still hash to what the head
// says; bytes past it were never acknowledged and are cut. A journal
// that does not match (edited, truncated or deleted) is not signed: it is
// kept aside as NAME.tampered, counted, and Validate reports it.
//
// The head file holds two fixed-size slots written in turn, each with a
// sequence number, so a write torn by a crash leaves the other slot, the
// previous head, intact: that batch was not acknowledged.

const (
	headFileName = "journal.head"
	headMagic    = "AZJHEAD1"
	headSlot     = 256
	headNameLen  = 64
	// magic, seq, length, sha256, name, mac
	headBody      = 8 + 8 + 8 + sha256.Size + headNameLen
	headRecordLen = headBody + sha256.Size
	tamperedExt   = ".tampered"
)

// journalHead is one head record.
type journalHead struct {
	seq    uint64
	length int64
	sum    [sha256.Size]byte
	name   string // "" before the first batch of this process
}

// headKey derives the head MAC key from the signing key: the signature of
// a fixed string (PKCS#1 v1.5 signatures are deterministic), which only a
// holder of the private key can compute and which nothing publishes.
func headKey(s crypto.Signer) ([]byte, error) {
	h := sha256.Sum256([]byte("azote audit journal head key v1"))
	sig, err := s.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	k := sha256.Sum256(sig)
	return k[:], nil
}

func (h *journalHead) marshal(mac hash.Hash, out []byte) []byte {
	out = append(out[:0], headMagic...)
	out = binary.BigEndian.AppendUint64(out, h.seq)
	out = binary.BigEndian.AppendUint64(out, uint64(h.length))
	out = append(out, h.sum[:]...)
	var name [headNameLen]byte
	copy(name[:], h.name)
	out = append(out, name[:]...)
	mac.Reset()
	mac.Write(out)
	out = mac.Sum(out)
	for len(out) < headSlot {
		out = append(out, 0)
	}
	return out
}

func unmarshalHead(key, b []byte) (journalHead, bool) {
	var h journalHead
	if len(b) < headRecordLen || string(b[:8]) != headMagic {
		return h, false
	}
	m := hmac.New(sha256.New, key)
	m.Write(b[:headBody])
	if !hmac.Equal(m.Sum(nil), b[headBody:headRecordLen]) {
		return h, false
	}
	h.seq = binary.BigEndian.Uint64(b[8:])
	h.length = int64(binary.BigEndian.Uint64(b[16:]))
	copy(h.sum[:], b[24:24+sha256.Size])
	name := b[24+sha256.Size : headBody]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	h.name = string(name)
	return h, h.length >= 0
}

// readHead reads the newest valid head. exists is false when there is no
// head file at all (a trail an older azoted wrote); ok is false when the
// file exists but neither slot verifies.
func readHead(path string, key []byte) (h journalHead, exists, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, false, false, nil
	}
	if err != nil {
		return h, false, false, err
	}
	for i := 0; i < 2; i++ {
		if len(b) < (i+1)*headSlot {
			break
		}
		if c, valid := unmarshalHead(key, b[i*headSlot:(i+1)*headSlot]); valid && (!ok || c.seq > h.seq) {
			h, ok = c, true
		}
	}
	return h, true, ok, nil
}

// headWriter writes heads into the two slots in turn.
type headWriter struct {
	f   *os.File
	mac hash.Hash
	seq uint64
	buf []byte
}

// openHeadWriter opens (creating) the head file and writes a head naming
// no journal, so that from now on the file exists: its absence later is
// not an upgrade but a deletion.
func openHeadWriter(path string, key []byte, seq uint64) (*headWriter, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	hw := &headWriter{f: f, mac: hmac.New(sha256.New, key), seq: seq, buf: make([]byte, 0, headSlot)}
	if err := hw.write("", 0, [sha256.Size]byte{}); err != nil {
		f.Close()
		return nil, err
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return hw, nil
}

// write records a head in the slot the newest head is not in and waits
// until it is on disk.
func (hw *headWriter) write(name string, length int64, sum [sha256.Size]byte) error {
	hw.seq++
	h := journalHead{seq: hw.seq, length: length, sum: sum, name: name}
	hw.buf = h.marshal(hw.mac, hw.buf)
	if _, err := hw.f.WriteAt(hw.buf, int64(hw.seq%2)*headSlot); err != nil {
		return err
	}
	return datasync(hw.f)
}

func (hw *headWriter) close() error {
	if hw == nil || hw.f == nil {
		return nil
	}
	return hw.f.Close()
}

// headCheck is what recovery decides for one journal.
type headCheck int

const (
	headLegacy   headCheck = iota // no head file: finish as found
	headCut                       // named: keep the first n bytes
	headUnacked                   // not named: nothing in it was acknowledged
	headTampered                  // named, but its bytes do not match
)

// checkJournal compares a journal's bytes with the head. It returns the
// decision and, for headCut, the acknowledged bytes.
func checkJournal(h journalHead, exists, ok bool, name string, b []byte) (headCheck, []byte, string) {
	switch {
	case !exists:
		return headLegacy, b, ""
	case !ok:
		return headTampered, nil, "the journal head does not verify"
	case h.name != name:
		return headUnacked, nil, ""
	case int64(len(b)) < h.length:
		return headTampered, nil, fmt.Sprintf("holds %d bytes, %d were acknowledged", len(b), h.length)
	}
	if sha256.Sum256(b[:h.length]) != h.sum {
		return headTampered, nil, "its acknowledged bytes were changed"
	}
	return headCut, b[:h.length], ""
}

// setAside renames a tampered journal to NAME.tampered (or, if it is gone,
// writes that file with the reason), so that it is not finished and signed
// and Validate reports it.
func setAside(root, name, reason string) error {
	dir := filepath.Join(root, activeDir)
	from, to := filepath.Join(dir, name), filepath.Join(dir, name+tamperedExt)
	err := os.Rename(from, to)
	if errors.Is(err, fs.ErrNotExist) {
		err = os.WriteFile(to, []byte(reason+"\n"), 0o600)
	}
	if err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// TamperedJournals lists the journals kept aside in dir because they did
// not match their signed head, as paths relative to dir.
func TamperedJournals(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, activeDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && filepath.Ext(n) == tamperedExt {
			if _, _, ok := parseJournalName(n[:len(n)-len(tamperedExt)]); ok {
				out = append(out, activeDir+"/"+n)
			}
		}
	}
	return out, nil
}

// logMatchesHead reports whether the finished log at root/rel holds
// exactly the journal bytes h vouches for: a crash between a rotation's
// log and its digest leaves the log unsigned, and whoever can write the
// trail could otherwise put a log of their own under the open journal's
// name for start-up to sign.
func logMatchesHead(root, rel string, h journalHead) (bool, error) {
	gz, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return false, err
	}
	b, err := gunzip(gz, maxLogJSON)
	if err != nil {
		return false, nil
	}
	var lf struct{ Records []json.RawMessage }
	if json.Unmarshal(b, &lf) != nil {
		return false, nil
	}
	if !bytes.Equal(logJSON(rawLines(lf.Records)), b) {
		return false, nil // not as finishJournal writes a log
	}
	s := sha256.New()
	var n int64
	for _, r := range lf.Records {
		s.Write(r)
		s.Write([]byte{'\n'})
		n += int64(len(r)) + 1
	}
	return n == h.length && [sha256.Size]byte(s.Sum(nil)) == h.sum, nil
}

func rawLines(rs []json.RawMessage) [][]byte {
	out := make([][]byte, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out
}
