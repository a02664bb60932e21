package iam

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/mfa"
	"github.com/azote/azote/internal/iam/policy"
)

func TestInit(t *testing.T) {
	e := newEnv(t)
	acct := e.svc.AccountID()
	if len(acct) != 12 {
		t.Fatalf("account id %q: want 12 digits", acct)
	}
	// Before init there is no root session to be had.
	_, err := e.svc.GetSessionToken(e.svc.HostRoot(1), api.GetSessionTokenRequest{Root: true, TokenCode: "123456"})
	wantCode(t, err, api.CodeAccountNotInitialized)

	resp, rootSeed := e.initAccount("alice")

	rootSerial := "arn:azote:iam::" + acct + ":mfa/" + RootMFAName
	if resp.AccountID != acct || resp.RootMFA != rootSerial {
		t.Errorf("Init answer: account %q root MFA %q, want %q %q", resp.AccountID, resp.RootMFA, acct, rootSerial)
	}
	a, err := e.svc.Account()
	must(t, err)
	if !a.Initialized || a.RootMFA != rootSerial || !a.InitializedAt.Equal(t0) {
		t.Errorf("account after Init = %+v", a)
	}

	g, members, err := e.svc.GetGroup(api.AdminGroup)
	must(t, err)
	wantAttached := []string{BuiltinARN("AdministratorAccess"), "arn:azote:iam::" + acct + ":policy/" + RequireMFAPolicy}
	if !slices.Equal(g.Attached, wantAttached) {
		t.Errorf("%s attached = %q, want %q", api.AdminGroup, g.Attached, wantAttached)
	}
	if !slices.Equal(members, []string{"alice"}) {
		t.Errorf("%s members = %q, want [alice]", api.AdminGroup, members)
	}
	p, err := e.svc.GetPolicy(RequireMFAPolicy)
	must(t, err)
	if p.BuiltIn || p.Document != requireMFADocument {
		t.Errorf("%s: built in %v, document changed %v", RequireMFAPolicy, p.BuiltIn, p.Document != requireMFADocument)
	}
	if resp.Admin.UserName != "alice" || !slices.Equal(resp.Admin.Groups, []string{api.AdminGroup}) {
		t.Errorf("admin = %+v", resp.Admin)
	}

	keys, err := e.svc.ListAccessKeys("alice")
	must(t, err)
	if len(keys) != 1 || keys[0].AccessKeyID != resp.AccessKey.AccessKeyID || keys[0].Status != api.StatusActive {
		t.Fatalf("admin keys = %+v, want the one Init returned", keys)
	}
	secret, active, c, err := e.svc.Credentials(resp.AccessKey.AccessKeyID, "")
	must(t, err)
	if secret == "" || secret != resp.AccessKey.SecretAccessKey || !active || c.ARN != resp.Admin.ARN {
		t.Errorf("admin key credentials: secret match %v active %v caller %s", secret == resp.AccessKey.SecretAccessKey, active, c.ARN)
	}

	devs, err := e.svc.ListMFADevices("")
	must(t, err)
	if len(devs) != 1 || devs[0].SerialNumber != rootSerial || !devs[0].Enabled || devs[0].UserName != "" {
		t.Errorf("MFA devices = %+v, want root's, enabled", devs)
	}

	t.Run("nothing secret on disk", func(t *testing.T) {
		db, err := os.ReadFile(e.path)
		must(t, err)
		if !bytes.Contains(db, []byte(resp.AccessKey.AccessKeyID)) {
			t.Fatal("database file does not hold the admin's key id: the scan proves nothing")
		}
		for what, s := range map[string][]byte{
			"root's seed":             rootSeed,
			"root's base32 seed":      []byte(mfa.EncodeSecret(rootSeed)),
			"the admin's secret":      []byte(resp.AccessKey.SecretAccessKey),
			"a SecretAccessKey field": []byte(`"SecretAccessKey"`),
		} {
			if bytes.Contains(db, s) {
				t.Errorf("database file holds %s", what)
			}
		}
	})

	t.Run("only once", func(t *testing.T) {
		_, err := e.svc.Init(api.InitRequest{RootCode1: e.codeAt(rootSeed, -1), RootCode2: e.code(rootSeed), AdminUser: "mallory"})
		wantCode(t, err, api.CodeAccountAlreadyInitialized)
		_, err = e.svc.BeginInit()
		wantCode(t, err, api.CodeAccountAlreadyInitialized)
		// Root's device cannot be made again either: that would
		// hand root to whoever scans the new seed.
		_, err = e.svc.CreateVirtualMFADevice(RootMFAName, "")
		wantCode(t, err, api.CodeEntityAlreadyExists)
		if _, err := e.svc.GetUser("mallory"); !api.IsCode(err, api.CodeNoSuchEntity) {
			t.Errorf("second Init created its admin: %v", err)
		}
	})

	t.Run("root has no access keys", func(t *testing.T) {
		for _, u := range []string{"", "root"} {
			_, err := e.svc.CreateAccessKey(u)
			wantCode(t, err, api.CodeRootAccessKeysDisabled)
		}
	})
}

func TestInitBadCodes(t *testing.T) {
	e := newEnv(t)
	dev, err := e.svc.BeginInit()
	must(t, err)
	seed := seedOf(t, dev)
	tests := []struct {
		name         string
		code1, code2 string
	}{
		{"wrong", e.wrongCode(seed), e.wrongCode(seed)},
		{"swapped", e.code(seed), e.codeAt(seed, -1)},
		{"same code twice", e.code(seed), e.code(seed)},
		{"gap of one step", e.codeAt(seed, -1), e.codeAt(seed, 1)},
		{"malformed", "12345", "abcdef"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Init(api.InitRequest{RootCode1: tc.code1, RootCode2: tc.code2, AdminUser: "alice"})
			wantCode(t, err, api.CodeInvalidAuthenticationCode)
			users, err := e.svc.ListUsers()
			must(t, err)
			groups, err := e.svc.ListGroups()
			must(t, err)
			pols, err := e.svc.ListPolicies()
			must(t, err)
			a, err := e.svc.Account()
			must(t, err)
			if len(users) != 0 || len(groups) != 0 || len(pols) != len(policy.BuiltinNames()) || a.Initialized {
				t.Errorf("failed Init left users %d, groups %d, policies %d, initialised %v", len(users), len(groups), len(pols), a.Initialized)
			}
		})
	}
	_, err = e.svc.Init(api.InitRequest{RootCode1: e.codeAt(seed, -1), RootCode2: e.code(seed), AdminUser: "bad name"})
	wantCode(t, err, api.CodeInvalidName)
	// Failed attempts count nothing against enrolment: the right codes
	// still work.
	if _, err := e.svc.Init(api.InitRequest{RootCode1: e.codeAt(seed, -1), RootCode2: e.code(seed), AdminUser: "alice"}); err != nil {
		t.Fatalf("Init with good codes after failures: %v", err)
	}
}

// TestInitRetryAfterFailure: a failure after root's device was enabled
// undoes the enable, so Init can be completed later with fresh codes.
func TestInitRetryAfterFailure(t *testing.T) {
	e := newEnv(t)
	dev, err := e.svc.BeginInit()
	must(t, err)
	seed := seedOf(t, dev)
	_, err = e.svc.CreateUser("alice")
	must(t, err)
	_, err = e.svc.Init(api.InitRequest{RootCode1: e.codeAt(seed, -1), RootCode2: e.code(seed), AdminUser: "alice"})
	wantCode(t, err, api.CodeEntityAlreadyExists)
	a, err := e.svc.Account()
	must(t, err)
	if a.Initialized {
		t.Fatal("account initialised although Init failed")
	}
	e.nextStep()
	// The spent pair is refused: c must be above the last counter.
	_, err = e.svc.Init(api.InitRequest{RootCode1: e.codeAt(seed, -2), RootCode2: e.codeAt(seed, -1), AdminUser: "bob"})
	wantCode(t, err, api.CodeInvalidAuthenticationCode)
	// The retry needs a pair above the spent step.
	resp, err := e.svc.Init(api.InitRequest{RootCode1: e.code(seed), RootCode2: e.codeAt(seed, 1), AdminUser: "bob"})
	if err != nil {
		t.Fatalf("Init retry: %v", err)
	}
	if !slices.Equal(resp.Admin.Groups, []string{api.AdminGroup}) {
		t.Errorf("admin groups = %q", resp.Admin.Groups)
	}
	g, _, err := e.svc.GetGroup(api.AdminGroup)
	must(t, err)
	if len(g.Attached) != 2 {
		t.Errorf("retry attached the policies again: %q", g.Attached)
	}
}

func TestAccessKeys(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	_, err := e.svc.CreateUser("bob")
	must(t, err)

	k1, err := e.svc.CreateAccessKey("bob")
	must(t, err)
	k2, err := e.svc.CreateAccessKey("bob")
	must(t, err)
	_, err = e.svc.CreateAccessKey("bob")
	wantCode(t, err, api.CodeLimitExceeded)
	_, err = e.svc.CreateAccessKey("nobody")
	wantCode(t, err, api.CodeNoSuchEntity)

	for _, k := range []api.NewAccessKey{k1, k2} {
		if !strings.HasPrefix(k.AccessKeyID, "AKIA") || len(k.SecretAccessKey) != 40 || k.Status != api.StatusActive || strings.Contains(mustJSON(t, k), "Sealed") {
			t.Errorf("created key = %+v", k)
		}
	}
	if k1.SecretAccessKey == k2.SecretAccessKey || k1.AccessKeyID == k2.AccessKeyID {
		t.Fatal("two keys share an id or a secret")
	}

	t.Run("secret shown only once", func(t *testing.T) {
		keys, err := e.svc.ListAccessKeys("bob")
		must(t, err)
		if len(keys) != 2 {
			t.Fatalf("ListAccessKeys = %d keys, want 2", len(keys))
		}
		raw, err := json.Marshal(keys)
		must(t, err)
		if bytes.Contains(raw, []byte("Sealed")) {
			t.Errorf("ListAccessKeys returned a sealed secret: %s", raw)
		}
		for _, k := range []api.NewAccessKey{k1, k2} {
			if bytes.Contains(raw, []byte(k.SecretAccessKey)) {
				t.Errorf("ListAccessKeys JSON holds the secret of %s", k.AccessKeyID)
			}
		}
		// The database file holds the key (so the scan can see
		// records) but never the secret in the clear.
		db, err := os.ReadFile(e.path)
		must(t, err)
		if !bytes.Contains(db, []byte(k1.AccessKeyID)) {
			t.Fatalf("database file does not hold key id %s: the scan proves nothing", k1.AccessKeyID)
		}
		for _, k := range []api.NewAccessKey{k1, k2} {
			if bytes.Contains(db, []byte(k.SecretAccessKey)) {
				t.Errorf("database file holds the plaintext secret of %s", k.AccessKeyID)
			}
		}
	})

	t.Run("credentials", func(t *testing.T) {
		secret, active, c, err := e.svc.Credentials(k1.AccessKeyID, "")
		must(t, err)
		u, err := e.svc.GetUser("bob")
		must(t, err)
		if secret != k1.SecretAccessKey || !active {
			t.Errorf("Credentials: secret match %v, active %v", secret == k1.SecretAccessKey, active)
		}
		if c.Type != api.PrincipalUser || c.ARN != u.ARN || c.PrincipalID != u.UserID || c.UserName != "bob" || c.AccessKeyID != k1.AccessKeyID || c.Session || c.MFA || c.AccountID != e.svc.AccountID() {
			t.Errorf("caller = %+v", c)
		}
		owner, err := e.svc.KeyOwner(k1.AccessKeyID)
		if err != nil || owner != "bob" {
			t.Errorf("KeyOwner = %q, %v", owner, err)
		}
	})

	t.Run("update", func(t *testing.T) {
		must(t, e.svc.UpdateAccessKey("bob", k2.AccessKeyID, api.StatusInactive))
		if _, active, _, err := e.svc.Credentials(k2.AccessKeyID, ""); err != nil || active {
			t.Errorf("after Inactive: active %v, err %v", active, err)
		}
		must(t, e.svc.UpdateAccessKey("bob", k2.AccessKeyID, api.StatusActive))
		if _, active, _, err := e.svc.Credentials(k2.AccessKeyID, ""); err != nil || !active {
			t.Errorf("after Active: active %v, err %v", active, err)
		}
		wantCode(t, e.svc.UpdateAccessKey("bob", k2.AccessKeyID, "active"), api.CodeInvalidParameter)
		// A key is only reachable through its owner.
		wantCode(t, e.svc.UpdateAccessKey("alice", k2.AccessKeyID, api.StatusInactive), api.CodeNoSuchEntity)
		wantCode(t, e.svc.DeleteAccessKey("alice", k2.AccessKeyID), api.CodeNoSuchEntity)
	})

	t.Run("rotate", func(t *testing.T) {
		// Both slots are taken: rotation needs a free one.
		_, err := e.svc.RotateAccessKey("bob", k1.AccessKeyID)
		wantCode(t, err, api.CodeLimitExceeded)
		must(t, e.svc.DeleteAccessKey("bob", k2.AccessKeyID))
		nk, err := e.svc.RotateAccessKey("bob", k1.AccessKeyID)
		must(t, err)
		if nk.AccessKeyID == k1.AccessKeyID || nk.SecretAccessKey == "" {
			t.Fatalf("rotated key = %+v", nk)
		}
		secret, active, _, err := e.svc.Credentials(nk.AccessKeyID, "")
		if err != nil || !active || secret != nk.SecretAccessKey {
			t.Errorf("new key: active %v, secret match %v, err %v", active, secret == nk.SecretAccessKey, err)
		}
		if _, active, _, err := e.svc.Credentials(k1.AccessKeyID, ""); err != nil || active {
			t.Errorf("old key after rotation: active %v, err %v", active, err)
		}
		keys, err := e.svc.ListAccessKeys("bob")
		must(t, err)
		status := map[string]string{}
		for _, k := range keys {
			status[k.AccessKeyID] = k.Status
		}
		want := map[string]string{k1.AccessKeyID: api.StatusInactive, nk.AccessKeyID: api.StatusActive}
		if len(status) != 2 || status[k1.AccessKeyID] != want[k1.AccessKeyID] || status[nk.AccessKeyID] != want[nk.AccessKeyID] {
			t.Errorf("keys after rotation = %v, want %v", status, want)
		}
		_, err = e.svc.RotateAccessKey("bob", "AKIANOSUCHKEY0000000")
		wantCode(t, err, api.CodeNoSuchEntity)
	})

	t.Run("delete", func(t *testing.T) {
		must(t, e.svc.DeleteAccessKey("bob", k1.AccessKeyID))
		if _, _, _, err := e.svc.Credentials(k1.AccessKeyID, ""); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("deleted key: err = %v, want ErrUnknownKey", err)
		}
		wantCode(t, e.svc.DeleteAccessKey("bob", k1.AccessKeyID), api.CodeNoSuchEntity)
	})

	t.Run("unknown", func(t *testing.T) {
		for _, id := range []string{"", "AKIANOSUCHKEY0000000", "ASIANOSUCHKEY0000000", "nonsense"} {
			if _, _, c, err := e.svc.Credentials(id, ""); !errors.Is(err, ErrUnknownKey) || c != nil {
				t.Errorf("Credentials(%q): caller %v, err %v, want ErrUnknownKey", id, c, err)
			}
		}
	})
}

func TestPolicies(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	const allowDescribe = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "compute:Describe*", "Resource": "*"}]}`

	t.Run("malformed", func(t *testing.T) {
		docs := map[string]string{
			"not json":          `{"Version": "2012-10-17", "Statement": [`,
			"empty":             ``,
			"unknown effect":    `{"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}`,
			"principal":         `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}`,
			"no resource":       `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*"}]}`,
			"unknown condition": `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEqualz": {"aws:username": "a"}}}]}`,
		}
		for name, doc := range docs {
			_, err := e.svc.CreatePolicy("P"+strings.ReplaceAll(name, " ", ""), doc)
			if !api.IsCode(err, api.CodeMalformedPolicyDocument) {
				t.Errorf("CreatePolicy(%s): %v, want MalformedPolicyDocument", name, err)
			}
			if err := e.svc.PutInlinePolicy(KindUser, "alice", "inline", doc); !api.IsCode(err, api.CodeMalformedPolicyDocument) {
				t.Errorf("PutInlinePolicy(%s): %v, want MalformedPolicyDocument", name, err)
			}
		}
		// A trust policy is an identity policy's opposite: it names a
		// principal and no resource.
		_, err := e.svc.CreateRole("R", allowDescribe, 0)
		wantCode(t, err, api.CodeMalformedPolicyDocument)
		_, err = e.svc.CreateRole("R", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "`+e.svc.RootARN()+`"}, "Action": "compute:RunInstances"}]}`, 0)
		wantCode(t, err, api.CodeMalformedPolicyDocument)
		_, err = e.svc.CreateRole("R", trustDoc(e.svc.RootARN(), ""), 0)
		must(t, err)
		wantCode(t, e.svc.UpdateAssumeRolePolicy("R", allowDescribe), api.CodeMalformedPolicyDocument)
	})

	t.Run("names", func(t *testing.T) {
		for _, name := range []string{"", "a b", "a/b", "ä", "x:y", strings.Repeat("n", 65)} {
			_, err := e.svc.CreatePolicy(name, allowDescribe)
			wantCode(t, err, api.CodeInvalidName)
			_, err = e.svc.CreateUser(name)
			wantCode(t, err, api.CodeInvalidName)
			_, err = e.svc.CreateGroup(name)
			wantCode(t, err, api.CodeInvalidName)
			_, err = e.svc.CreateRole(name, trustDoc(e.svc.RootARN(), ""), 0)
			wantCode(t, err, api.CodeInvalidName)
			_, err = e.svc.CreateVirtualMFADevice(name, "alice")
			wantCode(t, err, api.CodeInvalidName)
			wantCode(t, e.svc.PutInlinePolicy(KindUser, "alice", name, allowDescribe), api.CodeInvalidName)
		}
		for _, name := range []string{"a", "A.b-c_d+e=f,g@h", strings.Repeat("n", 64)} {
			if _, err := e.svc.CreateUser(name); err != nil {
				t.Errorf("CreateUser(%q): %v", name, err)
			}
		}
		_, err := e.svc.CreateUser("a")
		wantCode(t, err, api.CodeEntityAlreadyExists)
		_, err = e.svc.CreatePolicy("ReadOnlyAccess", allowDescribe)
		wantCode(t, err, api.CodeEntityAlreadyExists)
	})

	t.Run("delete while attached", func(t *testing.T) {
		p, err := e.svc.CreatePolicy("Describe", allowDescribe)
		must(t, err)
		if p.ARN != "arn:azote:iam::"+e.svc.AccountID()+":policy/Describe" {
			t.Errorf("policy ARN = %s", p.ARN)
		}
		_, err = e.svc.CreatePolicy("Describe", allowDescribe)
		wantCode(t, err, api.CodeEntityAlreadyExists)
		_, err = e.svc.CreateUser("bob")
		must(t, err)
		_, err = e.svc.CreateGroup("Ops")
		must(t, err)
		attach := []struct{ kind, name string }{{KindUser, "bob"}, {KindGroup, "Ops"}, {KindRole, "R"}}
		for _, a := range attach {
			must(t, e.svc.AttachPolicy(a.kind, a.name, p.ARN))
		}
		for _, a := range attach {
			wantCode(t, e.svc.DeletePolicy(p.ARN), api.CodeDeleteConflict)
			must(t, e.svc.DetachPolicy(a.kind, a.name, "Describe"))
		}
		wantCode(t, e.svc.DetachPolicy(KindUser, "bob", p.ARN), api.CodeNoSuchEntity)
		must(t, e.svc.DeletePolicy("Describe"))
		_, err = e.svc.GetPolicy(p.ARN)
		wantCode(t, err, api.CodeNoSuchEntity)
		wantCode(t, e.svc.AttachPolicy(KindUser, "bob", p.ARN), api.CodeNoSuchEntity)
		wantCode(t, e.svc.AttachPolicy("robot", "bob", "ReadOnlyAccess"), api.CodeInvalidParameter)
	})

	t.Run("builtin", func(t *testing.T) {
		for _, ref := range []string{"ReadOnlyAccess", BuiltinARN("AdministratorAccess")} {
			wantCode(t, e.svc.DeletePolicy(ref), api.CodeInvalidParameter)
			p, err := e.svc.GetPolicy(ref)
			if err != nil || !p.BuiltIn {
				t.Errorf("GetPolicy(%s) after refused delete: %+v, %v", ref, p, err)
			}
		}
		_, err := e.svc.GetPolicy(BuiltinARN("NoSuchPolicy"))
		wantCode(t, err, api.CodeNoSuchEntity)
	})

	t.Run("delete conflicts", func(t *testing.T) {
		_, err := e.svc.CreateGroup("Empty")
		must(t, err)
		must(t, e.svc.AddUserToGroup("bob", "Empty"))
		wantCode(t, e.svc.DeleteGroup("Empty"), api.CodeDeleteConflict)
		must(t, e.svc.RemoveUserFromGroup("bob", "Empty"))
		wantCode(t, e.svc.RemoveUserFromGroup("bob", "Empty"), api.CodeNoSuchEntity)
		must(t, e.svc.PutInlinePolicy(KindGroup, "Empty", "p", allowDescribe))
		wantCode(t, e.svc.DeleteGroup("Empty"), api.CodeDeleteConflict)
		must(t, e.svc.DeleteInlinePolicy(KindGroup, "Empty", "p"))
		wantCode(t, e.svc.DeleteInlinePolicy(KindGroup, "Empty", "p"), api.CodeNoSuchEntity)
		must(t, e.svc.DeleteGroup("Empty"))
		must(t, e.svc.AttachPolicy(KindRole, "R", "ReadOnlyAccess"))
		wantCode(t, e.svc.DeleteRole("R"), api.CodeDeleteConflict)
		must(t, e.svc.DetachPolicy(KindRole, "R", "ReadOnlyAccess"))
		must(t, e.svc.DeleteRole("R"))
		_, err = e.svc.GetRole("R")
		wantCode(t, err, api.CodeNoSuchEntity)
	})
}

func TestExportDiff(t *testing.T) {
	e := newEnv(t)
	admin, rootSeed := e.initAccount("alice")
	_, err := e.svc.CreateUser("henry")
	must(t, err)
	_, err = e.svc.CreateGroup("Devs")
	must(t, err)
	trust := trustDoc(e.svc.RootARN(), "")
	_, err = e.svc.CreateRole("Deploy", trust, 0)
	must(t, err)

	before, err := e.svc.Export()
	must(t, err)
	if d := api.Diff(before, before); len(d) != 0 {
		t.Fatalf("Diff of a snapshot with itself = %v", d)
	}
	// Whitespace is not drift.
	must(t, e.svc.UpdateAssumeRolePolicy("Deploy", strings.ReplaceAll(trust, " ", "\n  ")))
	if s, err := e.svc.Export(); err != nil || len(api.Diff(before, s)) != 0 {
		t.Fatalf("reformatting a trust policy shows as drift: %v %v", api.Diff(before, s), err)
	}

	must(t, e.svc.AttachPolicy(KindUser, "henry", "ReadOnlyAccess"))
	must(t, e.svc.AddUserToGroup("henry", "Devs"))
	key, err := e.svc.CreateAccessKey("henry")
	must(t, err)
	newTrust := trustDoc(e.svc.arn("iam", "user/henry"), "")
	must(t, e.svc.UpdateAssumeRolePolicy("Deploy", newTrust))

	after, err := e.svc.Export()
	must(t, err)
	want := []api.Change{
		{Kind: "changed", Path: "role/Deploy/trust", Before: canonicalJSON(trust), After: canonicalJSON(newTrust)},
		{Kind: "added", Path: "user/henry/access-key/" + key.AccessKeyID, After: api.StatusActive},
		{Kind: "added", Path: "user/henry/attached/" + BuiltinARN("ReadOnlyAccess"), After: "attached"},
		{Kind: "added", Path: "user/henry/group/Devs", After: "member"},
	}
	if got := api.Diff(before, after); !slices.Equal(got, want) {
		t.Errorf("Diff =\n%v\nwant\n%v", got, want)
	}
	// And backwards, the same changes undone.
	back := api.Diff(after, before)
	if len(back) != len(want) {
		t.Fatalf("reverse Diff = %v", back)
	}
	for i, c := range back {
		w := want[i]
		wantKind := map[string]string{"added": "removed", "changed": "changed"}[w.Kind]
		if c.Kind != wantKind || c.Path != w.Path || c.Before != w.After || c.After != w.Before {
			t.Errorf("reverse change %d = %+v, want the inverse of %+v", i, c, w)
		}
	}

	raw, err := json.Marshal(after)
	must(t, err)
	secrets := map[string]string{
		"henry's secret":    key.SecretAccessKey,
		"admin's secret":    admin.AccessKey.SecretAccessKey,
		"root's MFA seed":   mfa.EncodeSecret(rootSeed),
		"sealed key field":  "SealedSecret",
		"sealed seed field": "sealed_seed",
	}
	for what, s := range secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("snapshot JSON holds %s", what)
		}
	}
	if !bytes.Contains(raw, []byte(key.AccessKeyID)) {
		t.Error("snapshot does not list henry's key at all")
	}
}

// mustJSON encodes v as a caller would receive it.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
