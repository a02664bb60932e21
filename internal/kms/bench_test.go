package kms

import (
	"context"
	"testing"

	"github.com/azote/azote/internal/api"
)

// BenchmarkDataKeyPair is GenerateDataKey then Decrypt through Call, as
// bench/kms drives them over HTTPS, without the transport: the KMS's own
// share of a pair (policy decision, key lookup, sealing, audit fields).
func BenchmarkDataKeyPair(b *testing.B) {
	e := newEnv(b)
	admin := e.user("admin", allowAll)
	var k api.CreateKeyResponse
	e.must(admin, "CreateKey", `{}`, &k)
	body := []byte(`{"KeyId": "` + k.KeyMetadata.KeyId + `", "KeySpec": "AES_256", "EncryptionContext": {"bench": "1"}}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.kms.Call(ctx, admin, "GenerateDataKey", body)
		if err != nil {
			b.Fatal(err)
		}
		ct := res.Out.(*api.GenerateDataKeyResponse).CiphertextBlob
		if _, err := e.kms.Call(ctx, admin, "Decrypt", []byte(`{"CiphertextBlob": "`+encodeB64(ct)+`", "EncryptionContext": {"bench": "1"}}`)); err != nil {
			b.Fatal(err)
		}
	}
}
