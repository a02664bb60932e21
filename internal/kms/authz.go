package kms

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// Authorisation as KMS does it (docs/kms.md, "Who may use a key"):
//
//  1. An explicit Deny in the key policy or an identity policy refuses.
//  2. The key policy allows the principal directly, or allows the account
//     and an identity policy of the principal allows too.
//  3. Otherwise a grant on the key for the principal and the operation,
//     whose constraints the request's encryption context meets, allows.
//
// Grants take effect at once in azote (there is no eventual consistency
// to wait out), so a grant token only has to name a live grant.

// grantOperations are the operations a grant may allow (AWS's list).
var grantOperations = []string{"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
	"ReEncryptFrom", "ReEncryptTo", "Sign", "Verify", "GetPublicKey", "CreateGrant", "RetireGrant", "DescribeKey",
	"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac"}

// call is one request in flight: who, and the condition keys it carries.
type call struct {
	caller *api.Caller
	// conds are the request's own condition keys, lower-cased.
	conds map[string][]string
	// viaService names the azote service acting for the caller
	// (kms:ViaService), "" for a direct call.
	viaService  string
	grantTokens []string
	// resources are the key ARNs the call was authorised on, for the
	// audit record.
	resources []string
}

func (c *call) set(key string, values ...string) {
	if c.conds == nil {
		c.conds = map[string][]string{}
	}
	c.conds[strings.ToLower(key)] = values
}

// setContext adds the kms:EncryptionContext keys of ctx.
func (c *call) setContext(ctx map[string]string) {
	ks := slices.Sorted(maps.Keys(ctx))
	for _, k := range ks {
		c.set("kms:EncryptionContext:"+k, ctx[k])
	}
	if len(ks) > 0 {
		c.set("kms:EncryptionContextKeys", ks...)
	}
}

// reader runs fn in a read transaction: one the caller holds (inTx, in
// an Update), or a new one (Store.View).
type reader func(fn func(tx store.Tx) error) error

func inTx(tx store.Tx) reader { return func(fn func(store.Tx) error) error { return fn(tx) } }

// authorize decides whether the call may do op (kms:<op>) on key k;
// enc is the request's encryption context, for grant constraints; rd
// reads the grants.
//
// Never call it while holding a read transaction (View): the IAM opens
// its own, and a read transaction opened while another is held by the
// same goroutine waits behind a writer that is remapping the store file
// and waits for the first — a deadlock. Inside an Update it is safe (the
// only writer is the caller), and it reads the grants in that Update.
func (s *Service) authorize(rd reader, cl *call, op string, ref keyRef, enc map[string]string) error {
	k := &ref.key
	arn := s.keyARN(k.ID)
	cl.resources = appendUnique(cl.resources, arn)
	if err := s.checkGrantTokens(rd, cl.grantTokens); err != nil {
		return err
	}
	extra := map[string][]string{
		"kms:calleraccount": {cl.caller.AccountID},
		"kms:keyspec":       {k.Spec},
		"kms:keyusage":      {k.Usage},
		"kms:keyorigin":     {k.Origin},
	}
	if cl.viaService != "" {
		extra["kms:viaservice"] = []string{cl.viaService}
	}
	if ref.alias != "" {
		extra["kms:requestalias"] = []string{ref.alias}
	}
	for tk, tv := range k.Tags {
		extra["aws:resourcetag/"+strings.ToLower(tk)] = []string{tv}
	}
	maps.Copy(extra, cl.conds)
	doc, err := s.keyPolicy(k.Policy)
	if err != nil {
		return err
	}
	action := "kms:" + op
	d := s.cfg.IAM.AuthorizeKey(cl.caller, action, arn, extra, doc)
	if d.Allowed {
		return nil
	}
	if !d.Denied {
		ok, err := s.grantAllows(rd, cl.caller, k.ID, op, enc)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	return kmsErr(api.CodeKMSAccessDenied, "User: %s is not authorized to perform: %s on resource: %s %s", cl.caller.ARN, action, arn, d.Reason)
}

// authorizeAccount decides an action on no key (CreateKey, ListKeys,
// GenerateRandom ...) by identity policies alone.
func (s *Service) authorizeAccount(cl *call, op string) error {
	extra := map[string][]string{"kms:calleraccount": {cl.caller.AccountID}}
	maps.Copy(extra, cl.conds)
	d := s.cfg.IAM.Authorize(cl.caller, "kms:"+op, "*", extra, nil)
	if d.Allowed {
		return nil
	}
	return kmsErr(api.CodeKMSAccessDenied, "User: %s is not authorized to perform: kms:%s because %s", cl.caller.ARN, op, d.Reason)
}

// grantAllows tells whether a grant on key id lets c do op with the
// encryption context enc.
func (s *Service) grantAllows(rd reader, c *api.Caller, id, op string, enc map[string]string) (bool, error) {
	found := false
	err := rd(func(tx store.Tx) error {
		return tx.ForEach(GrantsTable, func(_ string, raw []byte) error {
			if found {
				return nil
			}
			var g grantRecord
			if err := unmarshal(raw, &g); err != nil {
				return err
			}
			if g.KeyID != id || !principalIs(c, g.Grantee) || !grantCovers(g.Operations, op) {
				return nil
			}
			if constraintsMet(g.Constraints, enc) {
				found = true
			}
			return nil
		})
	})
	return found, err
}

// grantCovers tells whether a grant's operations allow op. A grant for
// GenerateDataKey does not allow the pair operations, as in KMS; the
// ReEncrypt operations are ReEncryptFrom and ReEncryptTo.
func grantCovers(ops []string, op string) bool {
	return slices.Contains(ops, op)
}

// constraintsMet checks a grant's encryption-context constraints.
func constraintsMet(c *api.GrantConstraints, enc map[string]string) bool {
	if c == nil {
		return true
	}
	if c.EncryptionContextEquals != nil && !maps.Equal(c.EncryptionContextEquals, enc) {
		return false
	}
	for k, v := range c.EncryptionContextSubset {
		if got, ok := enc[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// principalIs tells whether a grant's principal names c: its ARN, or
// for a role session the role, or the account root for everyone of the
// account.
func principalIs(c *api.Caller, p string) bool {
	switch {
	case p == c.ARN:
		return true
	case c.Type == api.PrincipalAssumedRole && p == c.IssuerARN:
		return true
	}
	return false
}

// checkGrantTokens refuses tokens that name no live grant.
func (s *Service) checkGrantTokens(rd reader, tokens []string) error {
	if len(tokens) == 0 {
		return nil
	}
	if len(tokens) > 10 {
		return kmsErr(api.CodeKMSValidation, "at most 10 grant tokens")
	}
	live := map[string]bool{}
	err := rd(func(tx store.Tx) error {
		return tx.ForEach(GrantsTable, func(_ string, raw []byte) error {
			var g grantRecord
			if err := unmarshal(raw, &g); err != nil {
				return err
			}
			live[g.Token] = true
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, t := range tokens {
		if !live[t] {
			return kmsErr(api.CodeKMSInvalidGrantToken, "the grant token is not valid")
		}
	}
	return nil
}

// lockoutCheck refuses a key policy that would not let the caller change
// it again (KMS's policy lockout safety check), unless bypassed.
func (s *Service) lockoutCheck(cl *call, id, text string) error {
	doc, err := s.keyPolicy(text)
	if err != nil {
		return err
	}
	extra := map[string][]string{"kms:calleraccount": {cl.caller.AccountID}}
	if d := s.cfg.IAM.AuthorizeKey(cl.caller, "kms:PutKeyPolicy", s.keyARN(id), extra, doc); !d.Allowed {
		return kmsErr(api.CodeKMSMalformedPolicy, "The new key policy will not allow you to update the key policy in the future.")
	}
	return nil
}

func appendUnique(l []string, s string) []string {
	if slices.Contains(l, s) {
		return l
	}
	return append(l, s)
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
