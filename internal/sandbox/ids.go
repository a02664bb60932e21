package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// DefaultRange is the subordinate range azoted takes ids from unless told
// otherwise: 65,536 ids from 0x70000000, above systemd's container range
// (524288–1879048191) and below both its foreign range (from 2147352576)
// and the ids above 2^31 that some tools mishandle; it overlaps no usual
// /etc/subuid allocation (100000 upwards in steps of 65536).
const DefaultRange = "1879048192:65536"

// ErrExhausted is returned when every id of the range is in use.
var ErrExhausted = errors.New("sandbox: every uid of the range is in use")

// Range is Count ids from First.
type Range struct {
	First, Count int
}

// ParseRange reads "FIRST:COUNT" (the form of /etc/subuid). The range may
// not include 0 or 65534 (nobody), nor pass 2^31-1.
func ParseRange(s string) (Range, error) {
	a, b, ok := strings.Cut(s, ":")
	first, err1 := strconv.Atoi(a)
	count, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || first <= 0 || count <= 0 || first > 1<<31-1-count {
		return Range{}, fmt.Errorf("sandbox: uid range %q: want FIRST:COUNT, FIRST > 0, within 2^31", s)
	}
	r := Range{First: first, Count: count}
	if r.Contains(65534) {
		return Range{}, fmt.Errorf("sandbox: uid range %q includes nobody (65534)", s)
	}
	return r, nil
}

// Contains tells whether id is in the range.
func (r Range) Contains(id int) bool { return id >= r.First && id-r.First < r.Count }

func (r Range) String() string { return fmt.Sprintf("%d:%d", r.First, r.Count) }

// Allocator hands out the ids of a range, one live holder per id.
type Allocator struct {
	r Range
	// inUse lists the ids of the range that some process runs under
	// (any of its real, effective, saved or filesystem uids or gids).
	inUse func(Range) map[int]bool

	mu    sync.Mutex
	taken map[int]bool // handed out and not yet released
	next  int          // offset where the next search starts
}

// NewAllocator returns an allocator over r that checks /proc before it
// hands an id out.
func NewAllocator(r Range) *Allocator {
	return &Allocator{r: r, inUse: procIDs, taken: map[int]bool{}}
}

// Range is the allocator's range.
func (a *Allocator) Range() Range { return a.r }

// Take returns an id no live process uses and no one else holds. The
// caller releases it once the process it started under it is gone.
func (a *Allocator) Take() (int, error) {
	busy := a.inUse(a.r)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; i < a.r.Count; i++ {
		off := (a.next + i) % a.r.Count
		id := a.r.First + off
		if a.taken[id] || busy[id] {
			continue
		}
		a.taken[id] = true
		// Round robin: an id just released is the last to come back, so
		// that nothing a dead holder left behind meets a new one soon.
		a.next = off + 1
		return id, nil
	}
	return 0, ErrExhausted
}

// Hold marks id as held: a process a previous azoted started runs under
// it. Ids outside the range are ignored (processes started before ranges
// existed).
func (a *Allocator) Hold(id int) {
	if !a.r.Contains(id) {
		return
	}
	a.mu.Lock()
	a.taken[id] = true
	a.mu.Unlock()
}

// Release gives id back.
func (a *Allocator) Release(id int) {
	a.mu.Lock()
	delete(a.taken, id)
	a.mu.Unlock()
}

// procIDs reads the uids and gids of every process from /proc/*/status
// (not the owner of /proc/PID, which is root for a process that is not
// dumpable, as every card is).
func procIDs(r Range) map[int]bool {
	busy := map[int]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f, err := os.Open("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "Uid:") && !strings.HasPrefix(line, "Gid:") {
				continue
			}
			for _, v := range strings.Fields(line[4:]) {
				if id, err := strconv.Atoi(v); err == nil && r.Contains(id) {
					busy[id] = true
				}
			}
		}
		f.Close()
	}
	return busy
}
