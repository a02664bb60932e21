package controller

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/engine/enginetest"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store/etcd/etcdtest"
)

func startFleetController(t *testing.T, cfg Config) (*Controller, error) {
	t.Helper()
	c, err := newController(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), enginetest.New(), hostinfo.Info{Cores: 4})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// The fleet's wiring: --vpc-store etcd needs endpoints and a fleet key,
// and the etcd flags need it; two azoteds on one cluster share their
// VPCs and refuse a third under a name already taken; with the cluster
// gone, VPC calls answer StateStoreUnavailable.
func TestFleetWiring(t *testing.T) {
	fleetKey := filepath.Join(t.TempDir(), "fleet.key")
	if err := keys.CreateFleetKey(fleetKey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{VPCStore: "etcd", FleetKey: fleetKey}, "--etcd-endpoints"},
		{Config{VPCStore: "etcd", EtcdEndpoints: []string{"http://127.0.0.1:1"}}, "--fleet-key"},
		{Config{EtcdEndpoints: []string{"http://127.0.0.1:1"}}, "go with --vpc-store etcd"},
		{Config{VPCStore: "zookeeper"}, "want bolt or etcd"},
		{Config{VPCStore: "etcd", EtcdEndpoints: []string{"http://127.0.0.1:1"}, FleetKey: filepath.Join(t.TempDir(), "none")}, "does not exist"},
	} {
		tc.cfg.StateDir = t.TempDir()
		if _, err := startFleetController(t, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}

	cluster := etcdtest.Start(t, etcdtest.Options{})
	host := func(name string) Config {
		return Config{StateDir: t.TempDir(), HostName: name, VPCStore: "etcd", EtcdEndpoints: cluster.Endpoints(), FleetKey: fleetKey}
	}
	c1, err := startFleetController(t, host("h1"))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := startFleetController(t, host("h2"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := c1.CreateVPC(ctx, api.CreateVPCRequest{CIDR: "10.0.0.0/16", Name: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c2.DescribeVPC(ctx, "shared"); err != nil || got.ID != v.ID {
		t.Errorf("the other host's VPC: %+v %v", got, err)
	}
	if _, err := startFleetController(t, host("h1")); err == nil || !strings.Contains(err.Error(), "belongs to another azoted") {
		t.Errorf("a second azoted named h1: %v", err)
	}
	cluster.Stop()
	if _, err := c2.CreateVPC(ctx, api.CreateVPCRequest{CIDR: "10.1.0.0/16"}); !isCode(err, api.CodeStateStoreUnavailable) {
		t.Errorf("a VPC change without the cluster: %v, want %s", err, api.CodeStateStoreUnavailable)
	}
}
