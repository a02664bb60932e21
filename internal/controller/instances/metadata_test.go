package instances

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/controller/keypairs"
	"github.com/azote/azote/internal/controller/refusal"
)

// withGuestInputs gives fx's instance owner key pairs, a placement, an
// account and an identity key, and returns the key pairs and the key.
func withGuestInputs(t *testing.T, fx *fixture) (*keypairs.Service, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kps := keypairs.New(fx.db)
	fx.s.cfg.KeyPairs, fx.s.cfg.Region, fx.s.cfg.IdentityKey = kps, "eu-test-1", key
	fx.s.cfg.AccountID = func() string { return "123456789012" }
	return kps, key
}

// The metadata a card serves for an instance launched into a subnet with
// a key pair and user data: every field, the identity document signed so
// that the published key (and openssl) verifies it, and the launch's key
// kept when the pair is deleted.
func TestMetadata(t *testing.T) {
	fx := newNetFixture(t)
	kps, key := withGuestInputs(t, fx.fixture)
	ctx := context.Background()
	pair, err := kps.Create(api.CreateKeyPairRequest{KeyName: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	script := []byte("#!/bin/sh\necho hello\n")
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "web", Image: "default", VCPUs: 2, MemoryMiB: 96,
		Subnet: "front", SecurityGroups: []string{"web"}, PrivateIP: "10.0.1.5", KeyName: "ops", UserData: script,
		Metadata: &api.MetadataOptions{HTTPTokens: api.HTTPTokensOptional, HTTPPutResponseHopLimit: 3}})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(script)
	if inst.KeyName != "ops" || inst.UserDataSHA256 != hex.EncodeToString(sum[:]) ||
		inst.Metadata == nil || inst.Metadata.HTTPTokens != api.HTTPTokensOptional || inst.Metadata.HTTPPutResponseHopLimit != 3 {
		t.Fatalf("launched %+v %+v", inst, inst.Metadata)
	}
	if raw, _ := json.Marshal(inst); bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(script))) {
		t.Errorf("the public view carries the user data: %s", raw)
	}
	ud, err := fx.s.UserData(ctx, "web")
	if err != nil || !bytes.Equal(ud.UserData, script) || ud.InstanceID != inst.ID {
		t.Errorf("user data: %+v %v", ud, err)
	}
	fx.waitState(inst.ID, api.StateRunning)
	// The launch key stays the instance's.
	if _, err := kps.Delete(pair.ID); err != nil {
		t.Fatal(err)
	}

	ni := inst.NetworkInterfaces[0]
	md, err := fx.s.metadata(ni.ID)
	if err != nil || md == nil {
		t.Fatalf("metadata: %v %v", md, err)
	}
	rec, _ := fx.s.get(inst.ID)
	want := cardproto.NetMetadata{
		InstanceID: inst.ID, ImageID: inst.ImageID, InstanceType: "azote.2c.96m", Hostname: "ip-10-0-1-5",
		AccountID: "123456789012", Region: "eu-test-1", AvailabilityZone: "eu-test-1a",
		Interfaces: []cardproto.NetMetadataInterface{{MAC: ni.MAC, DeviceNumber: 0, InterfaceID: ni.ID, LocalIPv4: "10.0.1.5",
			SubnetID: fx.subnet.ID, SubnetCIDR: "10.0.1.0/24", VPCID: fx.vpc.ID, VPCCIDR: "10.0.0.0/16",
			SecurityGroups: []string{"web"}, SecurityGroupIDs: []string{fx.web.ID}}},
		PublicKeys:        []cardproto.NetPublicKey{{Name: "ops", OpenSSH: pair.PublicKey + " ops"}},
		UserData:          script,
		IdentityDocument:  md.IdentityDocument,
		IdentitySignature: md.IdentitySignature,
		HTTPTokens:        api.HTTPTokensOptional, HopLimit: 3,
	}
	gotJSON, _ := json.Marshal(md)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("metadata\n got %s\nwant %s", gotJSON, wantJSON)
	}

	var doc map[string]any
	if err := json.Unmarshal(md.IdentityDocument, &doc); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"accountId": "123456789012", "availabilityZone": "eu-test-1a", "imageId": inst.ImageID,
		"instanceId": inst.ID, "instanceType": "azote.2c.96m", "privateIp": "10.0.1.5", "region": "eu-test-1",
		"version": "2017-09-30", "pendingTime": rec.LaunchedAt.UTC().Format(time.RFC3339), "kernelId": nil} {
		if got, ok := doc[k]; !ok || got != v {
			t.Errorf("identity document %s = %v, want %v", k, got, v)
		}
	}
	sig, err := base64.StdEncoding.DecodeString(md.IdentitySignature)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(md.IdentityDocument)
	if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
		t.Error("the identity signature does not verify with the identity key")
	}
	tampered := bytes.Replace(md.IdentityDocument, []byte(inst.ID), []byte("i-0000000000000000"), 1)
	if d := sha256.Sum256(tampered); ecdsa.VerifyASN1(&key.PublicKey, d[:], sig) {
		t.Error("the signature verifies another document")
	}
	verifyWithOpenSSL(t, &key.PublicKey, md.IdentityDocument, sig)

	// The card is told it with its VPC's state.
	st, keys, err := fx.s.netState(ni.ID)
	for _, k := range keys {
		k.Free()
	}
	if err != nil || st.Metadata == nil || st.Metadata.InstanceID != inst.ID {
		t.Errorf("netState metadata: %+v %v", st.Metadata, err)
	}

	// A start is a new pending time.
	if _, err := fx.s.Stop(ctx, inst.ID, api.StopInstanceRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateStopped)
	time.Sleep(1100 * time.Millisecond) // RFC 3339 counts seconds
	if _, err := fx.s.Start(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	md2, err := fx.s.metadata(ni.ID)
	if err != nil || bytes.Equal(md2.IdentityDocument, md.IdentityDocument) || len(md2.PublicKeys) != 1 {
		t.Errorf("after a start: the same document, or no key (%v)\n%s", err, md2.IdentityDocument)
	}
}

// verifyWithOpenSSL checks a signature as docs/guests.md tells users to.
func verifyWithOpenSSL(t *testing.T, pub *ecdsa.PublicKey, doc, sig []byte) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl is not installed: the signature is not checked with it")
		return
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(pub)
	os.WriteFile(filepath.Join(dir, "identity-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "document"), doc, 0o600)
	os.WriteFile(filepath.Join(dir, "signature"), sig, 0o600)
	cmd := exec.Command("openssl", "dgst", "-sha256", "-verify", "identity-key.pem", "-signature", "signature", "document")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Verified OK") {
		t.Errorf("openssl dgst -verify: %v %s", err, out)
	}
}

// A launch with an unknown key pair, too much user data or bad metadata
// options is refused before anything is made.
// (The test's name is short: the cards' socket paths are under it.)
func TestGuestRefusals(t *testing.T) {
	fx := newNetFixture(t)
	withGuestInputs(t, fx.fixture)
	ctx := context.Background()
	base := api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64, Subnet: "front"}
	for _, c := range []struct {
		name string
		mod  func(r *api.RunInstanceRequest)
		want error
	}{
		{"unknown key", func(r *api.RunInstanceRequest) { r.KeyName = "nope" }, keypairs.ErrNotFound},
		{"user data", func(r *api.RunInstanceRequest) { r.UserData = make([]byte, api.MaxUserData+1) }, refusal.ErrInvalidParameter},
		{"hop 65", func(r *api.RunInstanceRequest) { r.Metadata = &api.MetadataOptions{HTTPPutResponseHopLimit: 65} }, refusal.ErrInvalidParameter},
		{"hop -1", func(r *api.RunInstanceRequest) { r.Metadata = &api.MetadataOptions{HTTPPutResponseHopLimit: -1} }, refusal.ErrInvalidParameter},
		{"tokens", func(r *api.RunInstanceRequest) { r.Metadata = &api.MetadataOptions{HTTPTokens: "sometimes"} }, refusal.ErrInvalidParameter},
	} {
		r := base
		c.mod(&r)
		if _, err := fx.s.Run(ctx, r); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if l, _ := fx.s.List(ctx); len(l) != 0 {
		t.Errorf("refused launches left %d instances", len(l))
	}
	if l := fx.interfaces(); len(l) != 0 {
		t.Errorf("refused launches left %d interfaces", len(l))
	}
	if d := fx.dirs(); len(d) != 0 {
		t.Errorf("refused launches left directories %q", d)
	}
	// The most user data there may be, and the defaults.
	r := base
	r.UserData = make([]byte, api.MaxUserData)
	inst, err := fx.s.Run(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Metadata == nil || inst.Metadata.HTTPTokens != api.HTTPTokensRequired || inst.Metadata.HTTPPutResponseHopLimit != 1 {
		t.Errorf("default metadata options %+v", inst.Metadata)
	}
}

// hostKeyLine is the agent's report of one host key.
func hostKeyLine(t *testing.T, id string) (string, string) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	return agent.Report{Event: agent.EventHostKey, Instance: id, Message: key + " root@guest"}.Format() + "\n", key
}

// The host keys a guest reports are kept, bounded, without their
// comments; unreadable ones and repeats cost nothing; a reboot starts a
// new set.
func TestSSHHostKeys(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "k", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	inst = fx.waitState(inst.ID, api.StateRunning)
	var lines strings.Builder
	var want []string
	for i := 0; i < MaxSSHHostKeys+4; i++ {
		l, k := hostKeyLine(t, inst.ID)
		lines.WriteString(l)
		if i < MaxSSHHostKeys {
			want = append(want, k)
		}
		if i == 0 {
			// Repeats and garbage between them.
			lines.WriteString(strings.Repeat(l, 50))
			lines.WriteString(agent.Report{Event: agent.EventHostKey, Instance: inst.ID, Message: "ssh-ed25519 AAAAnotakey"}.Format() + "\n")
			lines.WriteString(agent.Report{Event: agent.EventHostKey, Instance: inst.ID, Message: "ecdsa-sha2-nistp256"}.Format() + "\n")
			other, _ := hostKeyLine(t, "i-someoneelse0000")
			lines.WriteString(other)
		}
	}
	appendConsole(t, fx, inst.ID, lines.String())
	deadline := time.Now().Add(30 * time.Second)
	var got api.Instance
	for {
		got, _ = fx.s.Describe(ctx, inst.ID, 0, 0)
		if len(got.SSHHostKeys) >= MaxSSHHostKeys || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the rest of the lines, which must change nothing
	got, _ = fx.s.Describe(ctx, inst.ID, 0, 0)
	if !slices.Equal(got.SSHHostKeys, want) {
		t.Fatalf("host keys\n got %q\nwant %q", got.SSHHostKeys, want)
	}
	if writes := got.Revision - inst.Revision; writes != MaxSSHHostKeys {
		t.Errorf("%d record writes for %d keys", writes, MaxSSHHostKeys)
	}

	// A reboot: the old set goes; the new boot's keys come.
	if _, err := fx.s.Reboot(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	for {
		got, _ = fx.s.Describe(ctx, inst.ID, 0, 0)
		if got.BootCount == inst.BootCount+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got.SSHHostKeys) != 0 {
		t.Errorf("after a reboot the old keys are kept: %q", got.SSHHostKeys)
	}
	l, k := hostKeyLine(t, inst.ID)
	appendConsole(t, fx, inst.ID, l)
	for {
		got, _ = fx.s.Describe(ctx, inst.ID, 0, 0)
		if len(got.SSHHostKeys) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !slices.Equal(got.SSHHostKeys, []string{k}) {
		t.Errorf("the new boot's keys: %q", got.SSHHostKeys)
	}
}

func appendConsole(t *testing.T, fx *fixture, id, s string) {
	t.Helper()
	f, err := os.OpenFile(consolePath(fx.s.instanceDir(id)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestParseSSHHostKey(t *testing.T) {
	_, k := hostKeyLine(t, "i")
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{k + " root@x", k, true},
		{k, k, true},
		{"command=\"x\" " + k, "", false},
		{k + "\n" + k, "", false},
		{"ssh-ed25519 AAAA", "", false},
		{k + " " + strings.Repeat("c", MaxSSHHostKeyLen), "", false},
		{"", "", false},
	} {
		got, ok := ParseSSHHostKey(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseSSHHostKey(%.40q) = %q %v, want %q %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
