package kms

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/azote/azote/internal/api"
)

// FuzzCall: any body for any operation is answered with a result or an
// exception of the protocol, never a panic or an unnamed error.
func FuzzCall(f *testing.F) {
	e := newEnv(f)
	admin := e.user("admin", allowAll)
	var k api.CreateKeyResponse
	e.must(admin, "CreateKey", `{}`, &k)
	var ct api.EncryptResponse
	e.must(admin, "Encrypt", `{"KeyId": "`+k.KeyMetadata.KeyId+`", "Plaintext": "aGk="}`, &ct)
	ops := Operations()
	slices.Sort(ops)
	for i := range ops {
		f.Add(uint8(i), []byte(`{"KeyId": "`+k.KeyMetadata.KeyId+`"}`))
	}
	f.Add(uint8(0), []byte(`{"CiphertextBlob": "`+encodeB64(ct.CiphertextBlob)+`", "EncryptionContext": {"a": "b"}}`))
	f.Add(uint8(3), []byte(`{"Limit": -1, "Marker": "!!"}`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		op := ops[int(which)%len(ops)]
		_, err := e.kms.Call(context.Background(), admin, op, body)
		var ae *api.Error
		if err != nil && !errors.As(err, &ae) {
			t.Fatalf("%s: an error without an exception: %v", op, err)
		}
	})
}
