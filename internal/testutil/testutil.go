// Package testutil holds what tests share: the checks for what a test
// needs from the host, said plainly when it is missing, and a settable
// clock.
package testutil

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
)

// RequiresRoot skips t unless it runs as root.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: azoted's socket is root-only and instances run QEMU with a memfd backend")
	}
}

// RequiresCommand skips t unless name is on PATH; pkg is the Debian
// package that provides it.
func RequiresCommand(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("needs %s (Debian package %s); run scripts/test.sh to install it", name, pkg)
	}
}

// Clock is a settable time source for code that takes a Now function;
// safe for concurrent use, since concurrency tests read it from many
// goroutines.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// LogBuffer collects a log that several goroutines write.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is what was written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// FillFields sets every string, int and bool field of the struct v points
// to a non-zero value of its own.
func FillFields(v any) {
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("s" + rv.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		}
	}
}

// SameJSONFields fails t unless every field of from's JSON is in got's
// JSON with the same value: got is an API view of from that must carry
// every field under the same name.
func SameJSONFields(t testing.TB, name string, from, got any) {
	t.Helper()
	var f, g map[string]any
	raw, _ := json.Marshal(from)
	json.Unmarshal(raw, &f)
	raw, _ = json.Marshal(got)
	json.Unmarshal(raw, &g)
	for k, v := range f {
		if g[k] != v {
			t.Errorf("%s field %q = %v: its API view has %v", name, k, v, g[k])
		}
	}
}

// WaitState polls describe until the instance it describes is in state,
// for five seconds at most, and returns it.
func WaitState(t testing.TB, state string, describe func() (api.Instance, error)) api.Instance {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		inst, err := describe()
		if err != nil {
			t.Fatal(err)
		}
		if inst.State == state {
			return inst
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s: state %s (%s), want %s", inst.ID, inst.State, inst.StateReason, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// DirNames lists the names in dir (none if it cannot be read).
func DirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
