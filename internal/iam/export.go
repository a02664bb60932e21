package iam

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/azote/azote/internal/store"
)

// Snapshot is the permission state of the account without any secret:
// what `azote iam export` saves and `azote iam diff` compares against
// ("keep the correct state and keep comparing").
type Snapshot struct {
	AccountID string                    `json:"AccountId"`
	Users     map[string]SnapshotUser   `json:"Users"`
	Groups    map[string]SnapshotPolicy `json:"Groups"`
	Roles     map[string]SnapshotRole   `json:"Roles"`
	Policies  map[string]string         `json:"Policies"` // customer policy name → document
}

type SnapshotPolicy struct {
	Attached []string          `json:"AttachedPolicies"`
	Inline   map[string]string `json:"InlinePolicies"`
}

type SnapshotUser struct {
	SnapshotPolicy
	Groups     []string          `json:"Groups"`
	MFA        bool              `json:"MFAEnabled"`
	AccessKeys map[string]string `json:"AccessKeys"` // id → status
}

type SnapshotRole struct {
	SnapshotPolicy
	Trust string `json:"AssumeRolePolicyDocument"`
}

// Export reads the current snapshot.
func (s *Service) Export() (Snapshot, error) {
	snap := Snapshot{AccountID: s.AccountID(), Users: map[string]SnapshotUser{}, Groups: map[string]SnapshotPolicy{}, Roles: map[string]SnapshotRole{}, Policies: map[string]string{}}
	err := s.st.View(func(tx store.Tx) error {
		users, err := store.All[User](tx, tUsers)
		if err != nil {
			return err
		}
		for _, u := range users {
			su := SnapshotUser{SnapshotPolicy: snapPolicy(u.Attached, u.Inline), Groups: nonNil(u.Groups), MFA: u.MFASerial != "", AccessKeys: map[string]string{}}
			keys, err := s.userKeysTx(tx, u.UserName)
			if err != nil {
				return err
			}
			for _, k := range keys {
				su.AccessKeys[k.AccessKeyID] = k.Status
			}
			snap.Users[u.UserName] = su
		}
		groups, err := store.All[Group](tx, tGroups)
		if err != nil {
			return err
		}
		for _, g := range groups {
			snap.Groups[g.GroupName] = snapPolicy(g.Attached, g.Inline)
		}
		roles, err := store.All[Role](tx, tRoles)
		if err != nil {
			return err
		}
		if roles, err = showRolesTx(tx, roles); err != nil {
			return err
		}
		for _, r := range roles {
			snap.Roles[r.RoleName] = SnapshotRole{SnapshotPolicy: snapPolicy(r.Attached, r.Inline), Trust: canonicalJSON(r.TrustPolicy)}
		}
		pols, err := store.All[ManagedPolicy](tx, tPolicies)
		for _, p := range pols {
			snap.Policies[p.PolicyName] = canonicalJSON(p.Document)
		}
		return err
	})
	return snap, err
}

func nonNil(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

func snapPolicy(attached []string, inline map[string]string) SnapshotPolicy {
	p := SnapshotPolicy{Attached: nonNil(attached), Inline: map[string]string{}}
	for k, v := range inline {
		p.Inline[k] = canonicalJSON(v)
	}
	return p
}

// canonicalJSON re-encodes a document compactly with sorted keys, so
// whitespace never shows up as drift.
func canonicalJSON(doc string) string {
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		return doc
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// Change is one difference between two snapshots.
type Change struct {
	Kind   string `json:"kind"` // added, removed, changed
	Path   string `json:"path"` // e.g. user/alice/attached
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

func (c Change) String() string {
	switch c.Kind {
	case "added":
		return fmt.Sprintf("+ %s: %s", c.Path, c.After)
	case "removed":
		return fmt.Sprintf("- %s: %s", c.Path, c.Before)
	}
	return fmt.Sprintf("~ %s: %s -> %s", c.Path, c.Before, c.After)
}

// Diff lists what changed from old to cur, sorted by path.
func Diff(old, cur Snapshot) []Change {
	var out []Change
	flat := func(s Snapshot) map[string]string {
		m := map[string]string{}
		pol := func(prefix string, p SnapshotPolicy) {
			for _, a := range p.Attached {
				m[prefix+"/attached/"+a] = "attached"
			}
			for k, v := range p.Inline {
				m[prefix+"/inline/"+k] = v
			}
		}
		for n, u := range s.Users {
			m["user/"+n] = "exists"
			pol("user/"+n, u.SnapshotPolicy)
			for _, g := range u.Groups {
				m["user/"+n+"/group/"+g] = "member"
			}
			m["user/"+n+"/mfa"] = fmt.Sprint(u.MFA)
			for id, st := range u.AccessKeys {
				m["user/"+n+"/access-key/"+id] = st
			}
		}
		for n, g := range s.Groups {
			m["group/"+n] = "exists"
			pol("group/"+n, g)
		}
		for n, r := range s.Roles {
			m["role/"+n] = "exists"
			pol("role/"+n, r.SnapshotPolicy)
			m["role/"+n+"/trust"] = r.Trust
		}
		for n, d := range s.Policies {
			m["policy/"+n] = d
		}
		return m
	}
	a, b := flat(old), flat(cur)
	for k, v := range a {
		w, ok := b[k]
		switch {
		case !ok:
			out = append(out, Change{Kind: "removed", Path: k, Before: v})
		case v != w:
			out = append(out, Change{Kind: "changed", Path: k, Before: v, After: w})
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, Change{Kind: "added", Path: k, After: w})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return strings.Compare(out[i].Path, out[j].Path) < 0
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}
