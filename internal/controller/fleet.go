package controller

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/azote/azote/internal/durable"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/store/etcd"
)

// A fleet is the hosts that share VPCs: their network records (VPCs,
// subnets, security groups, interfaces, the underlay mapping, the claims
// that keep addresses unique) live in one etcd cluster, and their VPC
// traffic keys are wrapped under one fleet key. Everything else (images,
// volumes, instances, IAM, the audit trail) stays in each host's own
// bbolt store under its host key. docs/network.md, "Several hosts", says
// why.

// openVPCStore returns the store and the key wrapper of the network
// records: this host's own (st, the host key) by default, the fleet's
// with --vpc-store etcd.
func (c *Controller) openVPCStore(st store.Store, hostKey keys.Wrapper) (store.Store, keys.Wrapper, error) {
	cfg := c.cfg
	switch cfg.VPCStore {
	case "bolt":
		if len(cfg.EtcdEndpoints) > 0 || cfg.FleetKey != "" {
			return nil, nil, errors.New("--etcd-endpoints and --fleet-key go with --vpc-store etcd")
		}
		return st, hostKey, nil
	case "etcd":
	default:
		return nil, nil, fmt.Errorf("--vpc-store %q: want bolt or etcd", cfg.VPCStore)
	}
	if len(cfg.EtcdEndpoints) == 0 {
		return nil, nil, errors.New("--vpc-store etcd needs --etcd-endpoints: the client URLs of the fleet's etcd members")
	}
	if cfg.FleetKey == "" {
		return nil, nil, errors.New("--vpc-store etcd needs --fleet-key: the file of the key that wraps the VPCs' traffic keys, the same on every host of the fleet (make it once with: azoted fleet-key create FILE)")
	}
	fleetKey, err := keys.OpenFleet(cfg.FleetKey)
	if err != nil {
		return nil, nil, err
	}
	es, err := etcd.Open(etcd.Config{Endpoints: cfg.EtcdEndpoints, Prefix: cfg.EtcdPrefix})
	if err != nil {
		return nil, nil, fmt.Errorf("--vpc-store etcd: %w", err)
	}
	c.fleet = es
	return es, fleetKey, nil
}

// claimHost makes this host's name its own in the fleet's store, with a
// secret kept in the state directory: two hosts under one name would
// each take the other's network interfaces for its own.
func (c *Controller) claimHost() error {
	path := filepath.Join(c.cfg.StateDir, "fleet-host.token")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var t [16]byte
		if _, err := rand.Read(t[:]); err != nil {
			return err
		}
		b = []byte(hex.EncodeToString(t[:]))
		if err := durable.WriteFile(path, b, 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := c.vpcs.ClaimHost(strings.TrimSpace(string(b))); err != nil {
		return fmt.Errorf("--host-name %s in the fleet: %w", c.cfg.HostName, err)
	}
	return nil
}

func (c *Controller) closeFleet() {
	if c.fleet != nil {
		c.fleet.Close()
		c.fleet = nil
	}
}

// fleetKeyCommand is `azoted fleet-key create FILE`.
func fleetKeyCommand(args []string) int {
	if len(args) != 2 || args[0] != "create" {
		fmt.Fprintln(os.Stderr, "usage: azoted fleet-key create FILE\n\nMakes a new fleet key (32 random bytes, mode 0400) in FILE, which must not exist.\nCopy it to every host of the fleet and give it to each azoted with --fleet-key.")
		return 2
	}
	if err := keys.CreateFleetKey(args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "azoted:", err)
		return 1
	}
	return 0
}
