package audit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/testutil"
)

var (
	keyOnce sync.Once
	keys    [2]*rsa.PrivateKey
)

// testKey returns one of two RSA-2048 keys made once per test binary.
func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() {
		for j := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[j] = k
		}
	})
	return keys[i]
}

// fakeClock is a settable clock for Config.Now.
type fakeClock = testutil.Clock

func newClock() *fakeClock {
	return testutil.NewClock(time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC))
}

func testConfig(t testing.TB, dir string, clock *fakeClock) Config {
	cfg := Config{
		Dir:       dir,
		AccountID: "111122223333",
		Region:    "local-1",
		Signer:    testKey(t, 0),
	}
	if clock != nil {
		// The fake clock jumps by hours; only explicit calls rotate and
		// write digests.
		cfg.Now = clock.Now
		cfg.DigestEvery = 1000 * time.Hour
		cfg.MaxFileAge = 1000 * time.Hour
	}
	return cfg
}

func openTrail(t testing.TB, cfg Config) *Trail {
	t.Helper()
	tr, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// newTrail opens a trail of testConfig in a new temporary directory, on
// clock (nil: the real clock), closed when the test ends, and returns it
// with its directory.
func newTrail(t testing.TB, clock *fakeClock) (*Trail, string) {
	t.Helper()
	dir := t.TempDir()
	return openTrail(t, testConfig(t, dir, clock)), dir
}

func testRecord(i int) *Record {
	return &Record{
		UserIdentity: UserIdentity{
			Type:        "IAMUser",
			PrincipalID: fmt.Sprintf("AIDA%08d", i%7),
			ARN:         fmt.Sprintf("arn:aws:iam::111122223333:user/user%d", i%7),
			AccountID:   "111122223333",
			AccessKeyID: fmt.Sprintf("AKIA%016d", i%7),
			UserName:    fmt.Sprintf("user%d", i%7),
		},
		EventSource:       "ec2.azote.local",
		EventName:         []string{"RunInstances", "TerminateInstances", "DescribeInstances"}[i%3],
		SourceIPAddress:   "192.0.2.10",
		UserAgent:         "azote-cli/1.0",
		RequestParameters: map[string]any{"instanceId": fmt.Sprintf("i-%08d", i), "count": i},
		RequestID:         fmt.Sprintf("req-%d", i),
		ReadOnly:          i%3 == 2,
		EventType:         "AwsApiCall",
		ManagementEvent:   true,
	}
}

// appendN appends n records with clock ticking one second per record, and
// returns their event IDs in order.
func appendN(t testing.TB, tr *Trail, clock *fakeClock, from, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := from; i < from+n; i++ {
		r := testRecord(i)
		if err := tr.Append(context.Background(), r); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		ids = append(ids, r.EventID)
		if clock != nil {
			clock.Advance(time.Second)
		}
	}
	return ids
}

// copyTree copies dir to a new temporary directory: the image a crash
// would leave, since everything Append acknowledged is in the files.
func copyTree(t testing.TB, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func writerRunning() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Contains(string(buf[:n]), "audit.(*Trail).run")
}

// noWriterLeft fails t if a writer goroutine is still running shortly
// after every trail was closed.
func noWriterLeft(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for writerRunning() {
		if time.Now().After(deadline) {
			t.Fatal("writer goroutine still running after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func kinds(r Report) map[string][]string {
	m := map[string][]string{}
	for _, p := range r.Problems {
		m[p.Kind] = append(m[p.Kind], p.File)
	}
	return m
}

func mustValidate(t testing.TB, dir string) Report {
	t.Helper()
	rep, err := Validate(dir, nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("Validate found problems in an intact trail: %v", rep.Problems)
	}
	return rep
}

func listKind(t testing.TB, dir string, k fileKind) []string {
	t.Helper()
	top := map[fileKind]string{kindLog: logsDir, kindDigest: digestDir, kindSig: digestDir, kindKey: keysDir}[k]
	l, err := listTree(dir, top, k)
	if err != nil {
		t.Fatal(err)
	}
	sortByNameTime(l)
	return l
}
