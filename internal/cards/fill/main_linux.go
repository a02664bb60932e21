package fill

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/azote/azote/internal/cards/cardproto"
	cardrt "github.com/azote/azote/internal/cards/runtime"
	"github.com/azote/azote/internal/xts"
)

// sectorSize is the unit the volume is encrypted in: the blk card's.
const sectorSize = 512

// chunk is how much of the stream is encrypted and written at once.
const chunk = 1 << 20

// refusal is a stream that is not what was declared.
type refusal struct{ reason, msg string }

func (r *refusal) Error() string { return r.msg }

// Main is `azote-card fill`, started by cardhost.RunFill. It writes one
// JSON report (cardproto.FillReport) on stdout and exits 0 when the
// volume holds the whole stream, 1 otherwise.
func Main(args []string) int {
	fs := flag.NewFlagSet("azote-card fill", flag.ContinueOnError)
	card := cardrt.New(cardproto.KindFill, fs)
	uid := fs.Int("uid", -1, "uid and gid to drop to before reading the stream (-1: stay)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	res, err := run(card, *uid)
	rep := cardproto.FillReport{FillResult: res}
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		rep.Refused, rep.Message = ref.reason, ref.msg
	case err != nil:
		rep.Error = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	if err != nil {
		return 1
	}
	return 0
}

func run(card *cardrt.Card, uid int) (cardproto.FillResult, error) {
	var res cardproto.FillResult
	ch, err := card.File(cardproto.FDChannel)
	if err != nil {
		return res, err
	}
	cfg, key, err := cardproto.ReceiveFill(ch)
	ch.Close()
	if err != nil {
		return res, fmt.Errorf("reading the channel: %w", err)
	}
	defer key.Free()
	want, err := hex.DecodeString(cfg.SHA256)
	if err != nil || len(want) != sha256.Size {
		return res, fmt.Errorf("config: sha256 %q is not a hex SHA-256 digest", cfg.SHA256)
	}
	var cipher *xts.Cipher
	if key != nil {
		c, release, err := cardrt.VolumeCipher(key.Bytes())
		key.Free()
		if err != nil {
			return res, fmt.Errorf("volume key: %w", err)
		}
		defer release()
		cipher, res.Encrypted = c, true
	}
	in, err := card.File(cardproto.FDIn)
	if err != nil {
		return res, err
	}
	out, err := card.File(cardproto.FDOut)
	if err != nil {
		return res, err
	}
	fi, err := out.Stat()
	if err != nil {
		return res, err
	}
	size := fi.Size()
	if cfg.Length <= 0 || cfg.Length > size {
		return res, fmt.Errorf("config: a stream of %d bytes does not fit a volume of %d", cfg.Length, size)
	}
	// Nothing of the stream is read before the card is confined.
	if err := cardrt.Confine(uid, out, 0); err != nil {
		return res, fmt.Errorf("confining the card: %w", err)
	}
	h := sha256.New()
	n, err := copyStream(out, in, h, cfg.Length, cipher)
	res.Bytes = n
	if err != nil {
		return res, err
	}
	if got := h.Sum(nil); subtle.ConstantTimeCompare(got, want) != 1 {
		return res, &refusal{cardproto.FillDigest, fmt.Sprintf("the %d bytes received have SHA-256 %x, not the declared %x", n, got, want)}
	}
	if cipher != nil {
		if err := zeroTail(out, roundUp(cfg.Length), size, cipher); err != nil {
			return res, fmt.Errorf("writing the volume past the disk: %w", err)
		}
	}
	if err := out.Sync(); err != nil {
		return res, fmt.Errorf("writing the volume: %w", err)
	}
	return res, nil
}

func roundUp(n int64) int64 { return (n + sectorSize - 1) / sectorSize * sectorSize }

// copyStream writes exactly length bytes of in into dst from offset 0,
// hashing them into h and encrypting them with c when it is not nil; a
// last partial sector is padded with zeros. It reads one byte more to
// refuse a longer stream.
func copyStream(dst *os.File, in io.Reader, h hash.Hash, length int64, c *xts.Cipher) (int64, error) {
	buf := make([]byte, chunk)
	defer clear(buf)
	var off int64
	for off < length {
		n, err := io.ReadFull(in, buf[:min(chunk, length-off)])
		h.Write(buf[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return off + int64(n), &refusal{cardproto.FillShort, fmt.Sprintf("the stream ended after %d of %d bytes", off+int64(n), length)}
		}
		if err != nil {
			return off, fmt.Errorf("reading the stream: %w", err)
		}
		w := buf[:roundUp(int64(n))]
		clear(w[n:])
		if c != nil {
			if err := c.EncryptSectors(w, w, uint64(off/sectorSize), sectorSize); err != nil {
				return off, err
			}
		}
		if _, err := dst.WriteAt(w, off); err != nil {
			return off, fmt.Errorf("writing the volume: %w", err)
		}
		off += int64(n)
	}
	var one [1]byte
	if n, _ := io.ReadFull(in, one[:]); n > 0 {
		return off, &refusal{cardproto.FillLong, fmt.Sprintf("the stream carries more than the declared %d bytes", length)}
	}
	return off, nil
}

// zeroTail writes encrypted zeros into dst from from to size (sector
// aligned): the tail of a volume larger than its disk must read as
// zeros, and a hole would decrypt to noise.
func zeroTail(dst *os.File, from, size int64, c *xts.Cipher) error {
	zero := make([]byte, chunk)
	buf := make([]byte, chunk)
	for off := from; off < size; {
		n := min(chunk, size-off)
		if err := c.EncryptSectors(buf[:n], zero[:n], uint64(off/sectorSize), sectorSize); err != nil {
			return err
		}
		if _, err := dst.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}
