package encap

// The anti-replay window of one sender session, after RFC 6479 (as in
// WireGuard): a ring of 64-bit words holding one bit per counter, with the
// highest accepted counter as its head. Moving the head forward clears only
// the words it passes over, so an update costs O(1) however far the
// counter jumps, and the words are never shifted.
//
// The ring has windowWords words, but the word the head is in is shared
// between counters just behind the head and counters not yet seen, so the
// counters that can still be judged are the WindowSize = (windowWords-1)*64
// below and including the head.

const (
	windowWords = 64 // a power of two
	windowBits  = windowWords * 64
	// WindowSize is how far behind the highest counter a receiver has
	// accepted from a session a packet may be and still be accepted
	// (once): a packet whose counter is at least WindowSize below that
	// highest counter is rejected with ErrTooOld.
	WindowSize = windowBits - 64
)

// window is the replay state of one sender session. The zero value has
// seen nothing; counter 0 is never valid (senders start at 1).
type window struct {
	top  uint64 // highest accepted counter
	bits [windowWords]uint64
}

// check reports whether counter c would be accepted, without changing the
// window: nil, ErrReplay or ErrTooOld.
func (w *window) check(c uint64) error {
	if c == 0 {
		return ErrTooOld
	}
	if c > w.top {
		return nil
	}
	if w.top-c >= WindowSize {
		return ErrTooOld
	}
	if w.bits[(c/64)%windowWords]&(1<<(c%64)) != 0 {
		return ErrReplay
	}
	return nil
}

// update accepts counter c: it fails as check would, else records c,
// moving the head forward if c is beyond it.
func (w *window) update(c uint64) error {
	if err := w.check(c); err != nil {
		return err
	}
	if c > w.top {
		// Clear the words between the head's word (exclusive) and c's
		// word (inclusive); after a jump of a whole ring or more, all.
		from, to := w.top/64, c/64
		if to-from >= windowWords {
			clear(w.bits[:])
		} else {
			for i := from + 1; i <= to; i++ {
				w.bits[i%windowWords] = 0
			}
		}
		w.top = c
	}
	w.bits[(c/64)%windowWords] |= 1 << (c % 64)
	return nil
}

// resetSeen makes w a window that has seen every counter up to and
// including top and nothing after it: the state a session re-admitted
// after eviction starts from, since which of its counters up to top were
// seen is no longer known.
func (w *window) resetSeen(top uint64) {
	w.top = top
	for i := range w.bits {
		w.bits[i] = ^uint64(0)
	}
	// In the head's word only the counters up to top are seen.
	w.bits[(top/64)%windowWords] = ^uint64(0) >> (63 - top%64)
}
