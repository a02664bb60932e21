package kms

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// auditFieldsJSON is how the trail's parameters were made before
// auditFields walked the types: a JSON encode and decode of the value.
// It is the reference the reflective walk must agree with.
func auditFieldsJSON(v any, include func(member string) bool) map[string]any {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	out := map[string]any{}
	for k, val := range m {
		if !include(k) {
			continue
		}
		switch x := val.(type) {
		case nil:
			continue
		case string:
			if x == "" {
				continue
			}
		case bool:
			if !x {
				continue
			}
		case float64:
			if x == 0 {
				continue
			}
		case []any:
			if len(x) == 0 {
				continue
			}
		case map[string]any:
			if len(x) == 0 {
				continue
			}
		}
		if k == "KeyMetadata" {
			md, _ := val.(map[string]any)
			val = map[string]any{"keyId": md["KeyId"], "arn": md["Arn"]}
		}
		out[lowerCamel(k)] = val
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// fill sets every member of v (a pointer) to a value that is not empty.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem() == reflect.TypeFor[api.EpochTime]() {
			t := api.EpochTime(time.Unix(1700000000, 0))
			v.Set(reflect.ValueOf(&t))
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[api.EpochTime]() {
			v.Set(reflect.ValueOf(api.EpochTime(time.Unix(1700000000, 0))))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	}
}

// TestAuditFieldsAsJSON checks that the trail records the same
// parameters as a JSON round trip of every request and answer type
// would, both for empty values and for values with every member set.
func TestAuditFieldsAsJSON(t *testing.T) {
	keepReq := func(m string) bool { return !requestOmit[m] }
	keepOut := func(m string) bool { return responseKeep[m] }
	for name, o := range operations {
		for _, c := range []struct {
			typ  reflect.Type
			keep func(string) bool
		}{{reflect.TypeOf(o.newReq()).Elem(), keepReq}, {o.out, keepOut}} {
			typ := c.typ
			if typ.Kind() == reflect.Pointer {
				typ = typ.Elem()
			}
			empty, full := reflect.New(typ), reflect.New(typ)
			fill(full.Elem())
			for _, v := range []reflect.Value{empty, full} {
				got, _ := json.Marshal(auditFields(v.Interface(), c.keep))
				want, _ := json.Marshal(auditFieldsJSON(v.Interface(), c.keep))
				var g, w any
				json.Unmarshal(got, &g)
				json.Unmarshal(want, &w)
				if !reflect.DeepEqual(g, w) {
					t.Errorf("%s %s:\n got %s\nwant %s", name, typ, got, want)
				}
			}
		}
	}
}

func BenchmarkAuditFields(b *testing.B) {
	req := &api.GenerateDataKeyRequest{KeyId: "alias/x", KeySpec: "AES_256", EncryptionContext: map[string]string{"a": "b"}}
	b.ReportAllocs()
	for b.Loop() {
		auditFields(req, func(m string) bool { return !requestOmit[m] })
	}
}

// TestRecordCacheFollowsTheStore: a key record changed behind the KMS's
// back (a write it did not make, as a restore or another process would)
// is seen by the next call, and a caller changing its copy of a record
// changes nothing the next call reads.
func TestRecordCacheFollowsTheStore(t *testing.T) {
	e := newEnv(t)
	admin := e.user("admin", allowAll)
	var k api.CreateKeyResponse
	e.must(admin, "CreateKey", `{"Description": "before"}`, &k)
	id := k.KeyMetadata.KeyId
	var d api.DescribeKeyResponse
	e.must(admin, "DescribeKey", `{"KeyId": "`+id+`"}`, &d) // now cached
	err := e.st.Update(func(tx store.Tx) error {
		var r keyRecord
		if err := tx.Get(KeysTable, id, &r); err != nil {
			return err
		}
		r.Description = "after"
		return tx.Put(KeysTable, id, &r)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.must(admin, "DescribeKey", `{"KeyId": "`+id+`"}`, &d)
	if d.KeyMetadata.Description != "after" {
		t.Fatalf("description %q after a write to the store, want %q", d.KeyMetadata.Description, "after")
	}

	err = e.st.View(func(tx store.Tx) error {
		ref, err := e.kms.resolve(tx, id, false)
		if err != nil {
			return err
		}
		ref.key.Tags = map[string]string{}
		ref.key.Tags["x"] = "y"
		ref.key.Versions[0].Wrapped[0] ^= 0xff
		ref.key.Versions = append(ref.key.Versions, keyVersion{})
		again, err := e.kms.resolve(tx, id, false)
		if err != nil {
			return err
		}
		if len(again.key.Tags) != 0 || len(again.key.Versions) != 1 || again.key.Versions[0].Wrapped[0] == ref.key.Versions[0].Wrapped[0] {
			t.Fatalf("a caller's change to its copy reached the cache: %+v", again.key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ct api.EncryptResponse
	e.must(admin, "Encrypt", `{"KeyId": "`+id+`", "Plaintext": "aGVsbG8="}`, &ct)
}
