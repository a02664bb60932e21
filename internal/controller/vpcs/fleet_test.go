package vpcs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store/etcd"
	"github.com/azote/azote/internal/store/etcd/etcdtest"
)

// fleetHost is one host of a fleet: its network owner over its own
// client of the fleet's etcd cluster, with the fleet key, and the VPCs
// its subscribers were told about.
type fleetHost struct {
	s    *Service
	mu   sync.Mutex
	told map[string]int
}

func newFleetHost(t *testing.T, c *etcdtest.Cluster, fleetKey, id string) *fleetHost {
	t.Helper()
	db, err := etcd.Open(etcd.Config{Endpoints: c.Endpoints(), Prefix: "/fleet-test"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.OpenFleet(fleetKey)
	if err != nil {
		t.Fatal(err)
	}
	h := &fleetHost{s: New(Config{Store: db, Keys: k, HostID: id}), told: map[string]int{}}
	h.s.Subscribe(func(vpcID string) {
		h.mu.Lock()
		h.told[vpcID]++
		h.mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.s.Follow(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		db.Close()
	})
	return h
}

func (h *fleetHost) count(vpcID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.told[vpcID]
}

// waitTold waits until h has been told about vpcID more than after
// times. The bound is a deadline, not the claim: a watch reports within
// milliseconds; ten seconds only keeps a broken one from hanging the
// test.
func (h *fleetHost) waitTold(t *testing.T, vpcID string, after int, what string) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for h.count(vpcID) <= after {
		if time.Now().After(deadline) {
			t.Fatalf("%s: host was never told about VPC %s", what, vpcID)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("%s: told within %v", what, time.Since(start).Round(time.Millisecond))
}

// TestFleet: two hosts over one three-member etcd cluster share their
// VPCs. A change on one reaches the other's subscribers through the
// watch; the other opens the VPC's keys (the fleet key); addresses
// allocated on both at once never collide; each host ends only its own
// orphaned interfaces and holds its own id; and with the cluster gone
// every call is refused as unavailable, after which the hosts carry on.
func TestFleet(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	fleetKey := filepath.Join(t.TempDir(), "fleet.key")
	if err := keys.CreateFleetKey(fleetKey); err != nil {
		t.Fatal(err)
	}
	a := newFleetHost(t, c, fleetKey, "host-a")
	b := newFleetHost(t, c, fleetKey, "host-b")

	v, err := a.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.0.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	b.waitTold(t, v.ID, 0, "a VPC made on host a")
	sn, err := a.s.CreateSubnet(api.CreateSubnetRequest{VPC: v.ID, CIDR: "10.0.1.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	before := b.count(v.ID)
	n, err := a.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
	if err != nil {
		t.Fatal(err)
	}
	b.waitTold(t, v.ID, before, "an interface made on host a")
	if got, err := b.s.DescribeInterface(n.ID); err != nil || got.PrivateIP != n.PrivateIP {
		t.Fatalf("host b reads %+v %v", got, err)
	}
	// Where a card listens is news to the other host too.
	before = a.count(v.ID)
	if err := b.s.SetUnderlay(n.ID, netip.MustParseAddrPort("10.99.0.2:4000")); err != nil {
		t.Fatal(err)
	}
	a.waitTold(t, v.ID, before, "an underlay recorded on host b")
	// Both hosts open the VPC's key, and it is the same key.
	ka, err := a.s.Keys(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer FreeKeys(ka)
	kb, err := b.s.Keys(v.ID)
	if err != nil {
		t.Fatalf("host b cannot open the VPC's key: %v", err)
	}
	defer FreeKeys(kb)
	if len(ka) != 1 || len(kb) != 1 || string(ka[0].Key.Bytes()) != string(kb[0].Key.Bytes()) {
		t.Fatal("the hosts hold different keys for one VPC")
	}

	// Addresses taken on both hosts at once: every one distinct.
	var wg sync.WaitGroup
	const creates = 12
	ips := make(chan string, creates)
	errs := make(chan error, creates)
	for i := range creates {
		h := a
		if i%2 == 1 {
			h = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := h.s.CreateInterface(api.CreateNetworkInterfaceRequest{Subnet: sn.ID})
			if err != nil {
				errs <- err
				return
			}
			ips <- n.PrivateIP
		}()
	}
	wg.Wait()
	close(ips)
	close(errs)
	for err := range errs {
		t.Errorf("a concurrent create: %v", err)
	}
	seen := map[string]bool{n.PrivateIP: true}
	for ip := range ips {
		if seen[ip] {
			t.Errorf("address %s given twice", ip)
		}
		seen[ip] = true
	}

	// Orphans: each host sees only its own.
	if _, err := a.s.CreateAttached(api.CreateNetworkInterfaceRequest{Subnet: sn.ID}, api.NetworkInterfaceAttachment{InstanceID: "i-a"}); err != nil {
		t.Fatal(err)
	}
	none := func(string) bool { return false }
	if o, err := a.s.OrphansHere(none); err != nil || len(o) != 1 || o[0] != "i-a" {
		t.Errorf("host a's orphans: %v %v", o, err)
	}
	if o, err := b.s.OrphansHere(none); err != nil || len(o) != 0 {
		t.Errorf("host b's orphans: %v %v", o, err)
	}

	// Host ids: held by the azoted that claimed them.
	if err := a.s.ClaimHost("token-a"); err != nil {
		t.Fatal(err)
	}
	if err := a.s.ClaimHost("token-a"); err != nil {
		t.Errorf("claiming again: %v", err)
	}
	twin := New(Config{Store: a.s.cfg.Store, HostID: "host-a"})
	if err := twin.ClaimHost("token-other"); !errors.Is(err, ErrHostIDTaken) {
		t.Errorf("a second azoted named host-a: %v", err)
	}

	// The cluster gone: refused, with the kind the gateway maps to
	// StateStoreUnavailable, on reads and changes alike.
	c.Stop()
	_, err = a.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.1.0.0/16"})
	var r *refusal.Error
	if !errors.Is(err, refusal.ErrUnavailable) || !errors.As(err, &r) || !strings.Contains(r.Message, "VPC changes are refused until it is back") {
		t.Fatalf("a change without the cluster: %v", err)
	}
	if _, err := b.s.ListVPCs(); !errors.Is(err, refusal.ErrUnavailable) {
		t.Fatalf("a read without the cluster: %v", err)
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	// Back: changes are made again, and the watch that outlived the
	// outage tells the other host.
	deadline := time.Now().Add(30 * time.Second)
	var w api.VPC
	for {
		if w, err = b.s.CreateVPC(api.CreateVPCRequest{CIDR: "10.2.0.0/16"}); err == nil {
			break
		}
		if !errors.Is(err, refusal.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the cluster came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.waitTold(t, w.ID, 0, fmt.Sprintf("VPC %s made after the outage", w.ID))
}
