package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/testutil"
)

// env is a KMS with a real IAM on a bbolt file, and a clock.
type env struct {
	t    testing.TB
	path string
	w    *keys.Host
	clk  *testutil.Clock
	st   *store.Bolt
	iam  *iam.Service
	kms  *Service
}

func newEnv(t testing.TB) *env {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	w, err := keys.NewHost(key)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, path: filepath.Join(t.TempDir(), "state.db"), w: w, clk: testutil.NewClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))}
	e.open()
	t.Cleanup(func() { e.close() })
	return e
}

func (e *env) open() {
	st, err := store.OpenBolt(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
	if e.iam, err = iam.Open(st, e.w, "local", e.clk.Now); err != nil {
		e.t.Fatal(err)
	}
	e.kms = New(Config{Store: st, Keys: e.w, IAM: e.iam, Region: "local", Now: e.clk.Now})
}

func (e *env) close() {
	e.kms.Close()
	e.st.Close()
}

// user makes an IAM user with an inline policy (none for "") and returns
// it as a caller.
func (e *env) user(name, policy string) *api.Caller {
	e.t.Helper()
	u, err := e.iam.CreateUser(name)
	if err != nil {
		e.t.Fatal(err)
	}
	if policy != "" {
		if err := e.iam.PutInlinePolicy(iam.KindUser, name, "p", policy); err != nil {
			e.t.Fatal(err)
		}
	}
	return &api.Caller{Type: api.PrincipalUser, ARN: u.ARN, PrincipalID: u.UserID, AccountID: e.iam.AccountID(), UserName: name}
}

// call runs op with the JSON body and decodes the answer into out.
func (e *env) call(c *api.Caller, op, body string, out any) error {
	res, err := e.kms.Call(context.Background(), c, op, []byte(body))
	if err != nil {
		return err
	}
	if out != nil {
		b, _ := json.Marshal(res.Out)
		json.Unmarshal(b, out)
	}
	return nil
}

func (e *env) must(c *api.Caller, op, body string, out any) {
	e.t.Helper()
	if err := e.call(c, op, body, out); err != nil {
		e.t.Fatalf("%s %s: %v", op, body, err)
	}
}

func quoteJSON(s string) string { b, _ := json.Marshal(s); return string(b) }

const allowAll = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}`

// TestAuthorization is the table of who may use a key: the key policy
// first, IAM only where it delegates, grants added, explicit deny wins,
// and the KMS condition keys.
func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin", allowAll)
	acct := e.iam.AccountID()
	root := api.MakeARN("iam", acct, "root")
	stmt := func(effect, principal, action, cond string) string {
		s := `{"Effect": "` + effect + `", "Principal": {"AWS": "` + principal + `"}, "Action": "` + action + `", "Resource": "*"`
		if cond != "" {
			s += `, "Condition": ` + cond
		}
		return s + "}"
	}
	policy := func(stmts ...string) string {
		return `{"Version": "2012-10-17", "Statement": [` + strings.Join(stmts, ",") + `]}`
	}
	adminStmt := stmt("Allow", admin.ARN, "kms:*", "")
	n := 0
	type step struct {
		op, body string
		ok       bool
	}
	cases := []struct {
		name      string
		keyPolicy string // "" for the default policy
		iam       string // the caller's IAM policy
		grant     string // CreateGrant body members (without KeyId), "" for none
		alias     bool   // the key gets alias/t<n>
		tags      string
		steps     []step
	}{
		{name: "default policy, IAM allows", iam: allowAll,
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, true}}},
		{name: "default policy, no IAM", steps: []step{{"Encrypt", `"Plaintext": "aGk="`, false}}},
		{name: "key policy names the caller, no IAM", keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:Encrypt", "")),
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, true}, {"Decrypt", "", false}}},
		{name: "key policy without the account: IAM does not count", keyPolicy: policy(adminStmt), iam: allowAll,
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, false}, {"DescribeKey", "", false}}},
		{name: "key policy Deny beats IAM Allow", keyPolicy: policy(adminStmt, stmt("Allow", root, "kms:*", ""), stmt("Deny", "SELF", "kms:Encrypt", "")), iam: allowAll,
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, false}, {"DescribeKey", "", true}}},
		{name: "IAM Deny beats a grant", iam: `{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"}]}`,
			grant: `"Operations": ["Encrypt"]`, steps: []step{{"Encrypt", `"Plaintext": "aGk="`, false}}},
		{name: "a grant alone allows its operations only", grant: `"Operations": ["Encrypt", "DescribeKey"]`,
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, true}, {"DescribeKey", "", true}, {"GenerateDataKey", `"NumberOfBytes": 32`, false}}},
		{name: "grant constraint EncryptionContextEquals", grant: `"Operations": ["Encrypt"], "Constraints": {"EncryptionContextEquals": {"a": "1"}}`,
			steps: []step{{"Encrypt", `"Plaintext": "aGk=", "EncryptionContext": {"a": "1"}`, true}, {"Encrypt", `"Plaintext": "aGk=", "EncryptionContext": {"a": "1", "b": "2"}`, false}}},
		{name: "kms:EncryptionContext:KEY", keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:Encrypt", `{"StringEquals": {"kms:EncryptionContext:tenant": "a"}}`)),
			steps: []step{{"Encrypt", `"Plaintext": "aGk=", "EncryptionContext": {"tenant": "a"}`, true}, {"Encrypt", `"Plaintext": "aGk=", "EncryptionContext": {"tenant": "b"}`, false}, {"Encrypt", `"Plaintext": "aGk="`, false}}},
		{name: "kms:EncryptionContextKeys", keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:Encrypt", `{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant"]}, "Null": {"kms:EncryptionContextKeys": "false"}}`)),
			steps: []step{{"Encrypt", `"Plaintext": "aGk=", "EncryptionContext": {"tenant": "a"}`, true}, {"Encrypt", `"Plaintext": "aGk=", "EncryptionContext": {"tenant": "a", "other": "x"}`, false}}},
		{name: "kms:CallerAccount", keyPolicy: policy(adminStmt, stmt("Allow", "*", "kms:DescribeKey", `{"StringEquals": {"kms:CallerAccount": "`+acct+`"}}`), stmt("Allow", "*", "kms:Encrypt", `{"StringEquals": {"kms:CallerAccount": "999999999999"}}`)),
			steps: []step{{"DescribeKey", "", true}, {"Encrypt", `"Plaintext": "aGk="`, false}}},
		{name: "kms:ViaService", keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:Encrypt", `{"StringEquals": {"kms:ViaService": "compute.azote"}}`)),
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, false}}},
		{name: "kms:GrantOperations", keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:CreateGrant", `{"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}}`)),
			steps: []step{{"CreateGrant", `"GranteePrincipal": "` + root + `", "Operations": ["Decrypt"]`, true}, {"CreateGrant", `"GranteePrincipal": "` + root + `", "Operations": ["Decrypt", "Encrypt"]`, false}}},
		{name: "kms:GrantIsForAWSResource", keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:CreateGrant", `{"Bool": {"kms:GrantIsForAWSResource": "true"}}`)),
			steps: []step{{"CreateGrant", `"GranteePrincipal": "` + root + `", "Operations": ["Decrypt"]`, false}}},
		{name: "kms:RequestAlias", alias: true, keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:Encrypt", `{"StringEquals": {"kms:RequestAlias": "ALIAS"}}`)),
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, false}, {"Encrypt", `"Plaintext": "aGk=", "KeyId": "ALIAS"`, true}}},
		{name: "aws:ResourceTag", tags: `[{"TagKey": "team", "TagValue": "pay"}]`, keyPolicy: policy(adminStmt, stmt("Allow", "SELF", "kms:Encrypt", `{"StringEquals": {"aws:ResourceTag/team": "pay"}}`), stmt("Allow", "SELF", "kms:Decrypt", `{"StringEquals": {"aws:ResourceTag/team": "ops"}}`)),
			steps: []step{{"Encrypt", `"Plaintext": "aGk="`, true}, {"Decrypt", "", false}}},
	}
	for _, c := range cases {
		n++
		u := e.user("u"+itoa(int32(n)), c.iam)
		alias := "alias/t" + itoa(int32(n))
		body := `{"Description": "case"`
		if c.keyPolicy != "" {
			body += `, "Policy": ` + quoteJSON(strings.NewReplacer("SELF", u.ARN, "ALIAS", alias).Replace(c.keyPolicy))
		}
		if c.tags != "" {
			body += `, "Tags": ` + c.tags
		}
		var created api.CreateKeyResponse
		e.must(admin, "CreateKey", body+"}", &created)
		id := created.KeyMetadata.KeyId
		if c.alias {
			e.must(admin, "CreateAlias", `{"AliasName": "`+alias+`", "TargetKeyId": "`+id+`"}`, nil)
		}
		if c.grant != "" {
			e.must(admin, "CreateGrant", `{"KeyId": "`+id+`", "GranteePrincipal": "`+u.ARN+`", `+c.grant+`}`, nil)
		}
		var sample api.EncryptResponse
		e.must(admin, "Encrypt", `{"KeyId": "`+id+`", "Plaintext": "aGk="}`, &sample)
		for i, s := range c.steps {
			b := s.body
			switch s.op {
			case "Decrypt":
				b = `"CiphertextBlob": "` + encodeB64(sample.CiphertextBlob) + `"`
			}
			if !strings.Contains(b, `"KeyId"`) && s.op != "Decrypt" {
				if b != "" {
					b += ", "
				}
				b += `"KeyId": "` + id + `"`
			}
			b = strings.ReplaceAll(b, "ALIAS", alias)
			err := e.call(u, s.op, "{"+b+"}", nil)
			denied := api.IsCode(err, api.CodeKMSAccessDenied)
			if err != nil && !denied {
				t.Errorf("%s, step %d (%s): %v", c.name, i, s.op, err)
				continue
			}
			if denied == s.ok {
				t.Errorf("%s, step %d (%s {%s}): allowed=%v, want %v (%v)", c.name, i, s.op, b, !denied, s.ok, err)
			}
		}
	}
}

// TestAuthorizationKeySpec: kms:KeySpec in an IAM policy decides which
// keys a user may create.
func TestAuthorizationKeySpec(t *testing.T) {
	e := newEnv(t)
	u := e.user("maker", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:CreateKey", "Resource": "*",
		"Condition": {"StringEquals": {"kms:KeySpec": "SYMMETRIC_DEFAULT"}}}]}`)
	if err := e.call(u, "CreateKey", `{}`, nil); err != nil {
		t.Fatalf("a symmetric key: %v", err)
	}
	if err := e.call(u, "CreateKey", `{"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}`, nil); !api.IsCode(err, api.CodeKMSAccessDenied) {
		t.Fatalf("an RSA key: %v, want AccessDeniedException", err)
	}
}

func encodeB64(b []byte) string {
	s, _ := json.Marshal(b)
	return strings.Trim(string(s), `"`)
}

// TestDeletionAndPersistence: a key outlives a restart with its material
// and rotation; at the end of its waiting period it is deleted with its
// aliases and grants, and what it encrypted can no longer be decrypted.
func TestDeletionAndPersistence(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin", allowAll)
	var k api.CreateKeyResponse
	e.must(admin, "CreateKey", `{}`, &k)
	id := k.KeyMetadata.KeyId
	e.must(admin, "CreateAlias", `{"AliasName": "alias/gone", "TargetKeyId": "`+id+`"}`, nil)
	e.must(admin, "CreateGrant", `{"KeyId": "`+id+`", "GranteePrincipal": "`+admin.ARN+`", "Operations": ["Decrypt"]}`, nil)
	var ct api.EncryptResponse
	e.must(admin, "Encrypt", `{"KeyId": "`+id+`", "Plaintext": "c2VjcmV0", "EncryptionContext": {"v": "1"}}`, &ct)
	e.must(admin, "EnableKeyRotation", `{"KeyId": "`+id+`", "RotationPeriodInDays": 90}`, nil)

	e.close()
	e.open()
	var dec api.DecryptResponse
	e.must(admin, "Decrypt", `{"CiphertextBlob": "`+encodeB64(ct.CiphertextBlob)+`", "EncryptionContext": {"v": "1"}}`, &dec)
	if string(dec.Plaintext) != "secret" {
		t.Fatalf("after a restart: %q", dec.Plaintext)
	}
	// The rotation is due after 90 days: the sweep rotates, and the old
	// ciphertext still decrypts.
	e.clk.Advance(91 * 24 * time.Hour)
	if _, err := e.kms.Sweep(); err != nil {
		t.Fatal(err)
	}
	var rots api.ListKeyRotationsResponse
	e.must(admin, "ListKeyRotations", `{"KeyId": "`+id+`"}`, &rots)
	if len(rots.Rotations) != 1 || rots.Rotations[0].RotationType != "AUTOMATIC" {
		t.Fatalf("after 91 days: %+v", rots)
	}
	e.must(admin, "Decrypt", `{"CiphertextBlob": "`+encodeB64(ct.CiphertextBlob)+`", "EncryptionContext": {"v": "1"}}`, nil)

	var sched api.ScheduleKeyDeletionResponse
	e.must(admin, "ScheduleKeyDeletion", `{"KeyId": "`+id+`", "PendingWindowInDays": 7}`, &sched)
	e.clk.Advance(6 * 24 * time.Hour)
	if del, _ := e.kms.Sweep(); len(del) != 0 {
		t.Fatalf("deleted before the end of the window: %v", del)
	}
	if err := e.call(admin, "Decrypt", `{"CiphertextBlob": "`+encodeB64(ct.CiphertextBlob)+`", "EncryptionContext": {"v": "1"}}`, nil); !api.IsCode(err, api.CodeKMSInvalidState) {
		t.Fatalf("Decrypt while pending deletion: %v", err)
	}
	e.clk.Advance(25 * time.Hour)
	del, err := e.kms.Sweep()
	if err != nil || len(del) != 1 || !strings.HasSuffix(del[0], id) {
		t.Fatalf("Sweep after the window: %v %v", del, err)
	}
	for _, c := range []struct{ op, body string }{
		{"Decrypt", `{"CiphertextBlob": "` + encodeB64(ct.CiphertextBlob) + `", "EncryptionContext": {"v": "1"}}`},
		{"DescribeKey", `{"KeyId": "alias/gone"}`},
		{"DescribeKey", `{"KeyId": "` + id + `"}`},
	} {
		if err := e.call(admin, c.op, c.body, nil); !api.IsCode(err, api.CodeKMSNotFound) {
			t.Errorf("%s after deletion: %v, want NotFoundException", c.op, err)
		}
	}
	var grants int
	e.st.View(func(tx store.Tx) error {
		return tx.ForEach(GrantsTable, func(string, []byte) error { grants++; return nil })
	})
	if grants != 0 {
		t.Errorf("%d grants outlived their key", grants)
	}
}

// TestStateHoldsNoKeyMaterial: the store holds key material only wrapped:
// the state file contains no plaintext of a key's material, which the
// test reads through the service's own cache.
func TestStateHoldsNoKeyMaterial(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin", allowAll)
	var ids []string
	for _, spec := range []string{`{}`, `{"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}`, `{"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}`} {
		var k api.CreateKeyResponse
		e.must(admin, "CreateKey", spec, &k)
		ids = append(ids, k.KeyMetadata.KeyId)
	}
	var secrets [][]byte
	e.st.View(func(tx store.Tx) error {
		for _, id := range ids {
			var k keyRecord
			if err := tx.Get(KeysTable, id, &k); err != nil {
				t.Fatal(err)
			}
			m, err := e.kms.materialOf(&k, 0)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, append([]byte(nil), m.bytes()...))
		}
		return nil
	})
	e.close()
	e.open()
	state, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range secrets {
		for _, form := range [][]byte{m, []byte(base64.StdEncoding.EncodeToString(m)), []byte(hex.EncodeToString(m))} {
			if bytes.Contains(state, form) {
				t.Errorf("key %s: the state file holds its material", ids[i])
			}
		}
	}
}

// remapStore is the store with a writer that grows the file (so bbolt
// remaps it) pending whenever a read transaction of the KMS begins: a
// read transaction opened inside it then waits behind that writer, which
// waits for it — the deadlock TestNestedViewDeadlock makes certain.
type remapStore struct {
	*store.Bolt
	path string
	n    int
}

func (r *remapStore) View(fn func(store.Tx) error) error {
	return r.Bolt.View(func(tx store.Tx) error {
		fi, err := os.Stat(r.path)
		if err != nil {
			return err
		}
		r.n++
		n, size := r.n, int(fi.Size())*2
		started := make(chan struct{})
		go func() {
			close(started)
			r.Bolt.Update(func(tx store.Tx) error { return tx.Put("filler", itoa(int32(n)), strings.Repeat("f", size)) })
		}()
		<-started
		time.Sleep(50 * time.Millisecond) // the writer is now waiting to remap
		return fn(tx)
	})
}

// TestNestedViewDeadlock: the KMS never opens a read transaction (the
// IAM's) while it holds one; with a remapping writer pending, that hung
// Decrypt for good (seen in CI after a restart, with the IAM's policy
// cache cold and the janitor's Sweep growing the store).
func TestNestedViewDeadlock(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin", allowAll)
	var k api.CreateKeyResponse
	e.must(admin, "CreateKey", `{}`, &k)
	var ct api.EncryptResponse
	e.must(admin, "Encrypt", `{"KeyId": "`+k.KeyMetadata.KeyId+`", "Plaintext": "aGk="}`, &ct)
	e.kms.cfg.Store = &remapStore{Bolt: e.st, path: e.path}
	for i, c := range []struct{ op, body string }{
		{"Decrypt", `{"CiphertextBlob": "` + encodeB64(ct.CiphertextBlob) + `"}`},
		{"DescribeKey", `{"KeyId": "` + k.KeyMetadata.KeyId + `"}`},
		{"ListGrants", `{"KeyId": "` + k.KeyMetadata.KeyId + `"}`},
	} {
		// A change to IAM empties its policy cache: the decision reads
		// the store.
		if err := e.iam.PutInlinePolicy(iam.KindUser, "admin", "cold"+itoa(int32(i)), allowAll); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.call(admin, c.op, c.body, nil) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", c.op, err)
			}
		case <-time.After(20 * time.Second):
			// The deadlocked transaction would hang the test's cleanup
			// too (closing the store), and a panic runs the cleanups:
			// end the test binary with the cause.
			fmt.Fprintf(os.Stderr, "--- FAIL: TestNestedViewDeadlock: %s hung: a read transaction nested in another, behind a remapping writer\n", c.op)
			os.Exit(1)
		}
	}
}
