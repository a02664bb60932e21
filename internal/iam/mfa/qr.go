package mfa

import (
	"errors"
	"fmt"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// QuietZone is the light border, in modules, that ISO/IEC 18004 requires
// around a QR code so a scanner can find its edges.
const QuietZone = 4

// ErrQRText is returned when text does not fit in any QR code version.
var ErrQRText = errors.New("mfa: text does not fit in a QR code")

// QR draws text as a QR code (error correction level M) for a terminal,
// one character per module across and two modules per line down, which
// makes modules roughly square in a usual character cell.
//
// Terminals are mostly light text on a dark background, and scanners want
// dark modules on a light field, so the drawing prints light modules
// (including the quiet zone) as ink and leaves dark modules blank: it is
// the right way round on a dark terminal, and a photographic negative on a
// light one, which most phone scanners also read.
func QR(text string) (string, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrQRText, err)
	}
	// The library's own border is also 4 modules, but drawing it here
	// keeps the quiet zone a property of this package, not of a version
	// of the library.
	q.DisableBorder = true
	return draw(q.Bitmap()), nil
}

// draw renders a square bitmap (true = dark) with a QuietZone border. The
// last line of an odd-height drawing has nothing below it, so its lower
// half is left blank (terminal background) rather than inventing a fifth
// quiet-zone row.
func draw(bits [][]bool) string {
	size := len(bits) + 2*QuietZone
	dark := func(y, x int) bool {
		y, x = y-QuietZone, x-QuietZone
		if y < 0 || x < 0 || y >= len(bits) || x >= len(bits[y]) {
			return false
		}
		return bits[y][x]
	}
	var b strings.Builder
	b.Grow((size + 1) / 2 * (size*len("█") + 1))
	for y := 0; y < size; y += 2 {
		for x := 0; x < size; x++ {
			top := !dark(y, x)
			bottom := y+1 < size && !dark(y+1, x)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
