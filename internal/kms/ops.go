package kms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"unicode"

	"github.com/azote/azote/internal/api"
)

// operation is one KMS operation: its request type and what it does.
type operation struct {
	readOnly bool
	newReq   func() any
	out      reflect.Type // the answer's type, for tests
	run      func(s *Service, cl *call, req any) (any, error)
}

func op[Req any, Out any](readOnly bool, run func(s *Service, cl *call, req *Req) (Out, error)) operation {
	return operation{
		readOnly: readOnly,
		newReq:   func() any { return new(Req) },
		out:      reflect.TypeFor[Out](),
		run: func(s *Service, cl *call, req any) (any, error) {
			return run(s, cl, req.(*Req))
		},
	}
}

// operations are the KMS operations azote serves, by their X-Amz-Target
// names.
var operations = map[string]operation{
	"CreateKey":            op(false, (*Service).createKey),
	"DescribeKey":          op(true, (*Service).describeKey),
	"ListKeys":             op(true, (*Service).listKeys),
	"UpdateKeyDescription": op(false, (*Service).updateKeyDescription),
	"EnableKey":            op(false, (*Service).enableKey),
	"DisableKey":           op(false, (*Service).disableKey),
	"ScheduleKeyDeletion":  op(false, (*Service).scheduleKeyDeletion),
	"CancelKeyDeletion":    op(false, (*Service).cancelKeyDeletion),
	"EnableKeyRotation":    op(false, (*Service).enableKeyRotation),
	"DisableKeyRotation":   op(false, (*Service).disableKeyRotation),
	"GetKeyRotationStatus": op(true, (*Service).getKeyRotationStatus),
	"RotateKeyOnDemand":    op(false, (*Service).rotateKeyOnDemand),
	"ListKeyRotations":     op(true, (*Service).listKeyRotations),

	"CreateAlias": op(false, (*Service).createAlias),
	"UpdateAlias": op(false, (*Service).updateAlias),
	"DeleteAlias": op(false, (*Service).deleteAlias),
	"ListAliases": op(true, (*Service).listAliases),

	"Encrypt":                             op(false, (*Service).encrypt),
	"Decrypt":                             op(false, (*Service).decrypt),
	"ReEncrypt":                           op(false, (*Service).reEncrypt),
	"GenerateDataKey":                     op(false, (*Service).generateDataKey),
	"GenerateDataKeyWithoutPlaintext":     op(false, (*Service).generateDataKeyWithoutPlaintext),
	"GenerateRandom":                      op(false, (*Service).generateRandom),
	"GenerateDataKeyPair":                 op(false, (*Service).generateDataKeyPair),
	"GenerateDataKeyPairWithoutPlaintext": op(false, (*Service).generateDataKeyPairWithoutPlaintext),
	"Sign":                                op(false, (*Service).sign),
	"Verify":                              op(false, (*Service).verify),
	"GetPublicKey":                        op(true, (*Service).getPublicKey),
	"GenerateMac":                         op(false, (*Service).generateMac),
	"VerifyMac":                           op(false, (*Service).verifyMac),

	"GetKeyPolicy":     op(true, (*Service).getKeyPolicy),
	"PutKeyPolicy":     op(false, (*Service).putKeyPolicy),
	"ListKeyPolicies":  op(true, (*Service).listKeyPolicies),
	"TagResource":      op(false, (*Service).tagResource),
	"UntagResource":    op(false, (*Service).untagResource),
	"ListResourceTags": op(true, (*Service).listResourceTags),

	"CreateGrant":         op(false, (*Service).createGrant),
	"ListGrants":          op(true, (*Service).listGrants),
	"ListRetirableGrants": op(true, (*Service).listRetirableGrants),
	"RetireGrant":         op(false, (*Service).retireGrant),
	"RevokeGrant":         op(false, (*Service).revokeGrant),

	"GetParametersForImport": op(false, (*Service).getParametersForImport),
	"ImportKeyMaterial":      op(false, (*Service).importKeyMaterial),
}

// Operations lists the operations served, for documentation tests.
func Operations() []string {
	out := make([]string, 0, len(operations))
	for name := range operations {
		out = append(out, name)
	}
	return out
}

// ReadOnly tells whether operation name changes nothing (CloudTrail's
// readOnly); false for unknown names.
func ReadOnly(name string) bool { return operations[name].readOnly }

// Call runs one operation (the X-Amz-Target suffix) for an authenticated
// caller with its JSON body. It authorises the call itself, since the
// decision needs the key's policy and grants; the gateway audits the
// result. The error is an *api.Error with the exception's name.
func (s *Service) Call(ctx context.Context, c *api.Caller, name string, body []byte) (*api.JSONResult, error) {
	o, ok := operations[name]
	if !ok {
		return nil, kmsErr(api.CodeKMSUnknownOperation, "unknown operation %s", name)
	}
	req := o.newReq()
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, req); err != nil {
			return &api.JSONResult{ReadOnly: o.readOnly}, kmsErr(api.CodeKMSSerialization, "the request body is not a valid %s request: %v", name, err)
		}
	}
	cl := &call{caller: c}
	out, err := o.run(s, cl, req)
	res := &api.JSONResult{Out: out, Resources: cl.resources, ReadOnly: o.readOnly, Request: auditFields(req, func(m string) bool { return !requestOmit[m] })}
	if err == nil {
		res.Response = auditFields(out, func(m string) bool { return responseKeep[m] })
	}
	var e *api.Error
	if err != nil && !errors.As(err, &e) {
		s.log.Error("kms operation failed", "operation", name, "err", err)
		err = kmsErr(api.CodeKMSInternal, "internal error")
	}
	return res, err
}

// dryRun is the answer of an authorised request with DryRun set.
func dryRun() error {
	return kmsErr(api.CodeKMSDryRun, "The request would have succeeded, but the DryRun option is set.")
}

// requestOmit are request members never recorded: secrets (plaintext,
// messages, MACs, imported material, grant tokens) and opaque blobs.
var requestOmit = map[string]bool{
	"Plaintext": true, "CiphertextBlob": true, "Message": true, "Signature": true, "Mac": true,
	"EncryptedKeyMaterial": true, "ImportToken": true, "GrantTokens": true, "GrantToken": true,
}

// responseKeep are the answer members recorded: what identifies the
// outcome, never a key, plaintext or blob.
var responseKeep = map[string]bool{
	"KeyId": true, "SourceKeyId": true, "GrantId": true, "KeyState": true, "DeletionDate": true,
	"PendingWindowInDays": true, "KeyMetadata": true, "SignatureValid": true, "MacValid": true,
	"EncryptionAlgorithm": true, "SigningAlgorithm": true, "MacAlgorithm": true, "KeyPairSpec": true,
	"KeyMaterialId": true,
}

// auditFields renders v's members for the trail with CloudTrail's
// lower-camel names: those include says yes to, and not empty. KeyMetadata
// is cut to the key's id and ARN. It walks the request or answer struct by
// reflection, with each type's members listed once: a JSON encode and
// decode of both on every call was 4 % of azoted's CPU under bench/kms.
func auditFields(v any, include func(member string) bool) map[string]any {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil
	}
	out := map[string]any{}
	for _, m := range membersOf(rv.Type()) {
		if !include(m.name) {
			continue
		}
		f, ok := fieldByIndex(rv, m.index)
		if !ok || isEmpty(f) {
			continue
		}
		val := f.Interface()
		if md, ok := val.(api.KeyMetadata); ok {
			val = map[string]any{"keyId": md.KeyId, "arn": md.Arn}
		}
		out[m.audit] = val
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// member is one JSON member of a request or answer type.
type member struct {
	name  string // as on the wire: KeyId
	audit string // as in the trail: keyId
	index []int
}

var members sync.Map // reflect.Type → []member

// membersOf lists t's JSON members as encoding/json sees them: tag
// names, embedded structs' members promoted, "-" left out.
func membersOf(t reflect.Type) []member {
	if ms, ok := members.Load(t); ok {
		return ms.([]member)
	}
	var ms []member
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			idx := append(append([]int(nil), index...), i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, idx)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			ms = append(ms, member{name: name, audit: lowerCamel(name), index: idx})
		}
	}
	walk(t, nil)
	members.Store(t, ms)
	return ms
}

// fieldByIndex is v.FieldByIndex that reports a nil embedded pointer
// instead of panicking.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

// isEmpty is what the trail leaves out: nil, zero scalars, empty lists
// and maps.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return v.IsNil() || isEmpty(v.Elem())
	case reflect.Slice, reflect.Map, reflect.String:
		return v.Len() == 0
	case reflect.Struct:
		return false
	}
	return v.IsZero()
}

// lowerCamel turns KeyId into keyId and AWSAccountId into awsAccountId.
func lowerCamel(s string) string {
	r := []rune(s)
	for i := 0; i < len(r) && unicode.IsUpper(r[i]); i++ {
		if i > 0 && i+1 < len(r) && unicode.IsLower(r[i+1]) {
			break
		}
		r[i] = unicode.ToLower(r[i])
	}
	return strings.Clone(string(r))
}
