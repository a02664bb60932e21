package iam

import (
	"encoding/json"
	"github.com/azote/azote/internal/api"
	"sort"

	"github.com/azote/azote/internal/store"
)

// Export reads the current snapshot.
func (s *Service) Export() (api.Snapshot, error) {
	snap := api.Snapshot{AccountID: s.AccountID(), Users: map[string]api.SnapshotUser{}, Groups: map[string]api.SnapshotPolicy{}, Roles: map[string]api.SnapshotRole{}, Policies: map[string]string{}}
	err := s.st.View(func(tx store.Tx) error {
		users, err := store.All[api.User](tx, tUsers)
		if err != nil {
			return err
		}
		for _, u := range users {
			su := api.SnapshotUser{SnapshotPolicy: snapPolicy(u.Attached, u.Inline), Groups: nonNil(u.Groups), MFA: u.MFASerial != "", AccessKeys: map[string]string{}}
			keys, err := s.userKeysTx(tx, u.UserName)
			if err != nil {
				return err
			}
			for _, k := range keys {
				su.AccessKeys[k.AccessKeyID] = k.Status
			}
			snap.Users[u.UserName] = su
		}
		groups, err := store.All[api.Group](tx, tGroups)
		if err != nil {
			return err
		}
		for _, g := range groups {
			snap.Groups[g.GroupName] = snapPolicy(g.Attached, g.Inline)
		}
		roles, err := store.All[api.Role](tx, tRoles)
		if err != nil {
			return err
		}
		if roles, err = showRolesTx(tx, roles); err != nil {
			return err
		}
		for _, r := range roles {
			snap.Roles[r.RoleName] = api.SnapshotRole{SnapshotPolicy: snapPolicy(r.Attached, r.Inline), Trust: canonicalJSON(r.TrustPolicy)}
		}
		pols, err := store.All[api.ManagedPolicy](tx, tPolicies)
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

func snapPolicy(attached []string, inline map[string]string) api.SnapshotPolicy {
	p := api.SnapshotPolicy{Attached: nonNil(attached), Inline: map[string]string{}}
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
