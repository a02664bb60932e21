package controller

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/iam"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/kms"
	"github.com/azote/azote/internal/store"
)

// TestVolumesOnKMS: a persistent volume's data key is made under a KMS
// key — the account's default volume key unless one is named — for the
// caller, who must be allowed to use that key; only its ciphertext is
// kept, and the host decrypts it at attach through the volume's grant,
// audited. A disabled key or one pending deletion blocks the attach with
// the KMS's reason; purging the volume retires its grant.
func TestVolumesOnKMS(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	v, err := fx.c.CreateVolume(ctx, api.CreateVolumeRequest{Name: "data", SizeBytes: 1 << 20, Kind: api.VolumePersistent})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := fx.c.volumes.Get(v.ID)
	if rec.WrappedKey != nil || len(rec.DataKey) == 0 || !strings.HasPrefix(v.KMSKeyID, "arn:azote:kms:") {
		t.Fatalf("a new volume's key: wrapped %d bytes, KMS ciphertext %d bytes, key %q", len(rec.WrappedKey), len(rec.DataKey), v.KMSKeyID)
	}
	host := fx.c.iam.HostRoot(1)
	def, err := fx.c.kms.Call(ctx, host, "DescribeKey", []byte(`{"KeyId": "`+kms.DefaultVolumeAlias+`"}`))
	if err != nil || def.Out.(*api.DescribeKeyResponse).KeyMetadata.Arn != v.KMSKeyID {
		t.Fatalf("the default volume key: %v", err)
	}
	if g, _ := fx.c.kms.GrantsOf(v.KMSKeyID); len(g) != 1 || g[0] != "volume-"+v.ID {
		t.Fatalf("grants on the key: %v", g)
	}
	// The default key is the service's: as AWS's aws/ebs, its policy
	// lets the account use it only through the volumes, and nobody
	// disable or delete it.
	open := `{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Principal\": {\"AWS\": \"` +
		api.MakeARN("iam", fx.c.iam.AccountID(), "root") + `\"}, \"Action\": \"kms:*\", \"Resource\": \"*\"}]}`
	for _, op := range []string{"DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy"} {
		if _, err := fx.c.kms.Call(ctx, host, op, []byte(`{"KeyId": "`+v.KMSKeyID+`", "Policy": "`+open+`"}`)); !api.IsCode(err, api.CodeKMSAccessDenied) {
			t.Fatalf("%s of the default volume key: %v, want AccessDeniedException", op, err)
		}
	}
	if _, err := fx.c.kms.Call(ctx, host, "Encrypt", []byte(`{"KeyId": "`+v.KMSKeyID+`", "Plaintext": "aGk="}`)); !api.IsCode(err, api.CodeKMSAccessDenied) {
		t.Fatalf("Encrypt with the default volume key outside the volumes: %v", err)
	}

	// A volume under a customer key of the account.
	cust, err := fx.c.kms.Call(ctx, host, "CreateKey", []byte(`{"Description": "volumes of team a"}`))
	if err != nil {
		t.Fatal(err)
	}
	custARN := cust.Out.(*api.CreateKeyResponse).KeyMetadata.Arn
	if v, err = fx.c.CreateVolume(ctx, api.CreateVolumeRequest{Name: "team", SizeBytes: 1 << 20, Kind: api.VolumePersistent, KMSKeyID: custARN}); err != nil || v.KMSKeyID != custARN {
		t.Fatalf("a volume under a customer key: %v %+v", err, v)
	}
	rec, _ = fx.c.volumes.Get(v.ID)
	first, err := fx.c.volumes.LaunchKey(rec, false)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(first.Bytes())
	first.Free()

	// Disabled, then pending deletion: the attach is refused, saying why.
	keyID := `{"KeyId": "` + v.KMSKeyID + `"}`
	for _, c := range []struct{ block, unblock, why string }{
		{"DisableKey", "EnableKey", "DisabledException"},
		{"ScheduleKeyDeletion", "CancelKeyDeletion", "KMSInvalidStateException"},
	} {
		if _, err := fx.c.kms.Call(ctx, host, c.block, []byte(keyID)); err != nil {
			t.Fatal(err)
		}
		_, err := fx.c.volumes.LaunchKey(rec, false)
		if err == nil || !strings.Contains(err.Error(), c.why) {
			t.Fatalf("the refusal does not say %s: %v", c.why, err)
		}
		// A launch with the volume attached is refused with the reason,
		// before any card starts, and leaves nothing.
		_, err = fx.c.RunInstance(ctx, api.RunInstanceRequest{Name: "kms-blocked", Image: "default", VCPUs: 1, MemoryMiB: 64,
			Volumes: []api.VolumeAttachment{{Volume: v.ID}}})
		if msg := gateway.WireError(err).Message; !isCode(err, api.CodeIncorrectVolumeState) || !strings.Contains(msg, c.why) || !strings.Contains(msg, v.ID) {
			t.Fatalf("a launch with the key after %s: %v", c.block, err)
		}
		if l, _ := fx.c.ListInstances(ctx); len(l) != 0 {
			t.Fatalf("the refused launch left %v", l)
		}
		if got, _ := fx.c.DescribeVolume(ctx, v.ID); got.State != api.VolumeAvailable {
			t.Fatalf("the volume after the refused launch: %s", got.State)
		}
		fx.c.kms.Call(ctx, host, c.unblock, []byte(keyID))
		fx.c.kms.Call(ctx, host, "EnableKey", []byte(keyID))
	}
	again, err := fx.c.volumes.LaunchKey(rec, false)
	if err != nil || !bytes.Equal(again.Bytes(), want) {
		t.Fatalf("after the key is usable again: %v", err)
	}
	again.Free()

	// A user who may make volumes but has no KMS rights: the default key
	// serves them (its policy allows the account through the volumes);
	// a customer key whose policy leaves it to IAM refuses, and nothing
	// is made.
	svc := fx.c.iam
	u, _ := svc.CreateUser("builder")
	svc.PutInlinePolicy(iam.KindUser, "builder", "vol", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "compute:*", "Resource": "*"}]}`)
	builder := &api.Caller{Type: api.PrincipalUser, ARN: u.ARN, PrincipalID: u.UserID, AccountID: svc.AccountID(), UserName: "builder"}
	if _, err := fx.c.CreateVolume(api.WithCaller(ctx, builder), api.CreateVolumeRequest{Name: "by-default", SizeBytes: 1 << 20, Kind: api.VolumePersistent}); err != nil {
		t.Fatalf("a volume under the default key for a user without KMS rights: %v", err)
	}
	before, _ := fx.c.volumes.List()
	_, err = fx.c.CreateVolume(api.WithCaller(ctx, builder), api.CreateVolumeRequest{Name: "denied", SizeBytes: 1 << 20, Kind: api.VolumePersistent, KMSKeyID: custARN})
	if !api.IsCode(err, api.CodeAccessDenied) || !strings.Contains(err.Error(), "kms:GenerateDataKeyWithoutPlaintext") {
		t.Fatalf("a volume under a customer key for a user without KMS rights: %v", err)
	}
	if l, _ := fx.c.volumes.List(); len(l) != len(before) {
		t.Fatalf("the refused volume left something: %d volumes, were %d", len(l), len(before))
	}
	// With kms rights through compute only (kms:ViaService), a named key.
	svc.PutInlinePolicy(iam.KindUser, "builder", "kms", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant"], "Resource": "*",
		"Condition": {"StringEquals": {"kms:ViaService": "compute.azote"}}}]}`)
	ownARN := custARN
	v2, err := fx.c.CreateVolume(api.WithCaller(ctx, builder), api.CreateVolumeRequest{Name: "mine", SizeBytes: 1 << 20, Kind: api.VolumePersistent, KMSKeyID: ownARN})
	if err != nil || v2.KMSKeyID != ownARN {
		t.Fatalf("a volume under a named key: %v %+v", err, v2)
	}
	// The same rights do not reach the KMS directly: they hold only via
	// compute.
	if _, err := fx.c.kms.Call(ctx, builder, "GenerateDataKeyWithoutPlaintext", []byte(`{"KeyId": "`+ownARN+`", "NumberOfBytes": 32}`)); !api.IsCode(err, api.CodeKMSAccessDenied) {
		t.Fatalf("builder calling KMS directly: %v", err)
	}

	// Purge: the grant goes with the volume's record.
	if _, err := fx.c.volumes.Delete(v2.ID, true); err != nil {
		t.Fatal(err)
	}
	if g, _ := fx.c.kms.GrantsOf(ownARN); len(g) != 1 || g[0] != "volume-"+v.ID {
		t.Fatalf("grants after the volume %s was purged: %v, want only volume %s's", v2.ID, g, v.ID)
	}

	// The trail: the host's Decrypt through the grant, invoked by compute.
	recs, err := fx.c.trail.Lookup(audit.Filter{EventName: "Decrypt"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.EventSource == api.KMSEventSource && r.UserIdentity.InvokedBy == "compute.azote" && r.UserIdentity.ARN == kms.HostPrincipal &&
			len(r.Resources) == 1 && r.Resources[0].ARN == v.KMSKeyID {
			found = true
		}
	}
	if !found {
		t.Fatalf("no audited Decrypt of the volume's data key in %d records", len(recs))
	}
}

// TestVolumeKeysMigrate: a volume whose data key the host key wraps (made
// before volumes used KMS) is moved under the default KMS key at start,
// with the same key, and audited.
func TestVolumeKeysMigrate(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	v, err := fx.c.CreateVolume(ctx, api.CreateVolumeRequest{Name: "old", SizeBytes: 1 << 20, Kind: api.VolumePersistent})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := fx.c.volumes.Get(v.ID)
	k, err := fx.c.volumes.LaunchKey(rec, false)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(k.Bytes())
	k.Free()
	// Make it the record of a volume from before: wrapped by the host key.
	host, escrow, err := keys.OpenHost(filepath.Join(fx.cfg.StateDir, "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	escrow.Free()
	wrapped, err := host.Wrap(keys.Volumes, want, []byte(v.ID))
	if err != nil {
		t.Fatal(err)
	}
	err = fx.c.store.Update(func(tx store.Tx) error {
		var r volumes.Record
		if err := tx.Get(volumes.Table, v.ID, &r); err != nil {
			return err
		}
		r.WrappedKey, r.DataKey, r.KMSKeyID = wrapped, nil, ""
		return tx.Put(volumes.Table, v.ID, &r)
	})
	if err != nil {
		t.Fatal(err)
	}
	fx.c.Close()
	fx.start()
	rec, _ = fx.c.volumes.Get(v.ID)
	if rec.WrappedKey != nil || rec.DataKey == nil || rec.KMSKeyID == "" {
		t.Fatalf("after the start the record holds wrapped %d bytes, KMS %d bytes, key %q", len(rec.WrappedKey), len(rec.DataKey), rec.KMSKeyID)
	}
	k, err = fx.c.volumes.LaunchKey(rec, false)
	if err != nil || !bytes.Equal(k.Bytes(), want) {
		t.Fatalf("the migrated volume's key differs (%v)", err)
	}
	k.Free()
	if recs, _ := fx.c.trail.Lookup(audit.Filter{EventName: "VolumeKeyMigrated"}); len(recs) != 1 {
		t.Fatalf("%d VolumeKeyMigrated records", len(recs))
	}
}
