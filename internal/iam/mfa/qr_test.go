package mfa

import (
	"errors"
	"strings"
	"testing"

	qrcode "github.com/skip2/go-qrcode"
)

// parseDrawing turns a drawing back into modules (true = dark), checking
// the character set and that every line has the same width.
func parseDrawing(t *testing.T, s string) [][]bool {
	t.Helper()
	if !strings.HasSuffix(s, "\n") {
		t.Fatal("drawing does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	width := len([]rune(lines[0]))
	grid := make([][]bool, 0, 2*len(lines))
	for i, line := range lines {
		runes := []rune(line)
		if len(runes) != width {
			t.Fatalf("line %d is %d wide, line 0 is %d", i, len(runes), width)
		}
		top, bottom := make([]bool, width), make([]bool, width)
		for x, r := range runes {
			// Light modules are ink: the block halves that are drawn.
			switch r {
			case '█':
			case '▀':
				bottom[x] = true
			case '▄':
				top[x] = true
			case ' ':
				top[x], bottom[x] = true, true
			default:
				t.Fatalf("line %d column %d: unexpected %q", i, x, r)
			}
		}
		grid = append(grid, top, bottom)
	}
	// An odd-sized symbol leaves the last line's lower half undrawn,
	// which reads back as a dark row: drop it.
	if len(grid) == width+1 {
		for x, dark := range grid[width] {
			if !dark {
				t.Fatalf("lower half of the last line is drawn at column %d", x)
			}
		}
		grid = grid[:width]
	}
	if len(grid) != width {
		t.Fatalf("drawing is %d modules wide and %d high", width, len(grid))
	}
	return grid
}

// isFinder reports whether the 7x7 block at (y, x) is a finder pattern:
// dark ring, light ring, dark 3x3 centre.
func isFinder(g [][]bool, y, x int) bool {
	for dy := range 7 {
		for dx := range 7 {
			ring := max(abs(dy-3), abs(dx-3))
			if g[y+dy][x+dx] != (ring != 2) {
				return false
			}
		}
	}
	return true
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestQRStructure(t *testing.T) {
	for _, text := range []string{
		"x",
		URI("azote", "alice@example.com", testSecret),
		URI("Acme: Ops & Dev", strings.Repeat("long-account-name.", 10), make([]byte, 64)),
	} {
		s, err := QR(text)
		if err != nil {
			t.Fatalf("QR(%q): %v", text, err)
		}
		g := parseDrawing(t, s)
		n := len(g)
		symbol := n - 2*QuietZone
		if symbol < 21 || (symbol-17)%4 != 0 {
			t.Fatalf("symbol is %d modules, not a QR version size (17+4v)", symbol)
		}
		// The quiet zone is light all round.
		for i := range n {
			for q := range QuietZone {
				for _, m := range []bool{g[q][i], g[n-1-q][i], g[i][q], g[i][n-1-q]} {
					if m {
						t.Fatalf("dark module in the quiet zone (ring %d, index %d)", q, i)
					}
				}
			}
		}
		// Light is ink: the first line, all quiet zone, is solid blocks.
		if first, _, _ := strings.Cut(s, "\n"); first != strings.Repeat("█", n) {
			t.Fatalf("first line is %q, want solid blocks", first)
		}
		// Finder patterns at three corners, none at the fourth.
		lo, hi := QuietZone, n-QuietZone-7
		for _, c := range [][2]int{{lo, lo}, {lo, hi}, {hi, lo}} {
			if !isFinder(g, c[0], c[1]) {
				t.Errorf("no finder pattern at row %d column %d", c[0], c[1])
			}
		}
		if isFinder(g, hi, hi) {
			t.Error("finder pattern in the bottom-right corner")
		}
		// Module for module what the library computes, including its own
		// default 4-module border.
		q, err := qrcode.New(text, qrcode.Medium)
		if err != nil {
			t.Fatal(err)
		}
		want := q.Bitmap()
		if len(want) != n {
			t.Fatalf("library bitmap is %d, drawing %d", len(want), n)
		}
		for y := range n {
			for x := range n {
				if g[y][x] != want[y][x] {
					t.Fatalf("module (%d,%d) dark=%v, library says %v", y, x, g[y][x], want[y][x])
				}
			}
		}
	}
}

func TestQRDifferentTexts(t *testing.T) {
	a, err := QR(URI("azote", "alice", testSecret))
	if err != nil {
		t.Fatal(err)
	}
	b, err := QR(URI("azote", "alicf", testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Error("different texts draw the same code")
	}
	again, err := QR(URI("azote", "alice", testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if a != again {
		t.Error("the same text draws differently")
	}
}

func TestQRTooLong(t *testing.T) {
	if _, err := QR(strings.Repeat("\xff", 4000)); !errors.Is(err, ErrQRText) {
		t.Errorf("QR(4000 bytes) = %v, want ErrQRText", err)
	}
}

// draw on hand-made bitmaps, worked out on paper: even and odd sizes.
func TestDraw(t *testing.T) {
	full := strings.Repeat("█", 10) + "\n"
	want2 := full + full + "████▄▀████\n" + full + full
	if got := draw([][]bool{{true, false}, {false, true}}); got != want2 {
		t.Errorf("2x2 diagonal:\n%s\nwant:\n%s", got, want2)
	}
	full = strings.Repeat("█", 9) + "\n"
	want1 := full + full + "████▄████\n" + full + strings.Repeat("▀", 9) + "\n"
	if got := draw([][]bool{{true}}); got != want1 {
		t.Errorf("1x1 dark:\n%s\nwant:\n%s", got, want1)
	}
}
