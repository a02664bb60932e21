package controller

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/iam"
)

// kmsClients serves fx's API over TLS and returns a function that makes
// an unmodified aws-sdk-go-v2 KMS client for an IAM user with the given
// inline policy (none when policy is "").
func kmsClients(fx *fixture) func(user, policy string) (*kms.Client, string) {
	t := fx.t
	srv := httptest.NewTLSServer(gateway.NewHandler(fx.c.apiConfig(true)))
	t.Cleanup(srv.Close)
	time.Sleep(time.Until(fx.c.started.Truncate(time.Second).Add(time.Second)))
	return func(user, policy string) (*kms.Client, string) {
		u, err := fx.c.iam.CreateUser(user)
		if err != nil {
			t.Fatal(err)
		}
		if policy != "" {
			if err := fx.c.iam.PutInlinePolicy(iam.KindUser, user, "kms", policy); err != nil {
				t.Fatal(err)
			}
		}
		key, err := fx.c.iam.CreateAccessKey(user)
		if err != nil {
			t.Fatal(err)
		}
		cfg := aws.Config{Region: fx.c.cfg.Region, HTTPClient: srv.Client(),
			Credentials: credentials.NewStaticCredentialsProvider(key.AccessKeyID, key.SecretAccessKey, "")}
		return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(srv.URL) }), u.ARN
	}
}

const kmsAll = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}`

// wantAPIError checks that err is the SDK's typed error T.
func wantAPIError[T error](t *testing.T, what string, err error) {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		var ae smithy.APIError
		errors.As(err, &ae)
		t.Fatalf("%s: got %v (%T), want %T", what, err, ae, target)
	}
}

// wantCode checks the code of an error the SDK has no type for (KMS
// models no ValidationException; AWS sends it all the same).
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

// TestKMSThroughSDK runs the KMS operations through aws-sdk-go-v2's own
// KMS client, pointed at azoted: every call SigV4-signed for service kms,
// authorised by the key policy, IAM and grants, and audited.
func TestKMSThroughSDK(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	connect := kmsClients(fx)
	admin, adminARN := connect("kms-admin", kmsAll)
	app, appARN := connect("app", "")

	// A symmetric key with the default policy, named by an alias.
	created, err := admin.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("orders"),
		Tags: []types.Tag{{TagKey: aws.String("team"), TagValue: aws.String("payments")}}})
	if err != nil {
		t.Fatal(err)
	}
	md := created.KeyMetadata
	if md.KeyState != types.KeyStateEnabled || md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt ||
		md.Origin != types.OriginTypeAwsKms || !strings.HasPrefix(aws.ToString(md.Arn), "arn:azote:kms:") || md.CreationDate == nil ||
		time.Since(*md.CreationDate) > time.Minute || len(md.EncryptionAlgorithms) != 1 {
		t.Fatalf("CreateKey metadata: %+v", md)
	}
	keyID := aws.ToString(md.KeyId)
	if _, err := admin.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/orders"), TargetKeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/orders"), TargetKeyId: &keyID})
	wantAPIError[*types.AlreadyExistsException](t, "second alias", err)
	for _, ref := range []string{keyID, aws.ToString(md.Arn), "alias/orders"} {
		d, err := admin.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
		if err != nil || aws.ToString(d.KeyMetadata.KeyId) != keyID {
			t.Fatalf("DescribeKey %s: %v", ref, err)
		}
	}
	_, err = admin.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/none")})
	wantAPIError[*types.NotFoundException](t, "unknown alias", err)

	// Encrypt and decrypt, the context bound; Decrypt finds the key.
	ec := map[string]string{"order": "42"}
	enc, err := admin.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/orders"), Plaintext: []byte("card 4111"), EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil || string(dec.Plaintext) != "card 4111" || aws.ToString(dec.KeyId) != aws.ToString(md.Arn) {
		t.Fatalf("Decrypt: %v %+v", err, dec)
	}
	_, err = admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"order": "43"}})
	wantAPIError[*types.InvalidCiphertextException](t, "other context", err)
	_, err = admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	wantAPIError[*types.InvalidCiphertextException](t, "no context", err)
	tampered := bytes.Clone(enc.CiphertextBlob)
	tampered[len(tampered)-1] ^= 1
	_, err = admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: tampered, EncryptionContext: ec})
	wantAPIError[*types.InvalidCiphertextException](t, "tampered blob", err)

	other, err := admin.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, KeyId: other.KeyMetadata.KeyId})
	wantAPIError[*types.IncorrectKeyException](t, "Decrypt naming another key", err)
	re, err := admin.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: ec,
		DestinationKeyId: other.KeyMetadata.KeyId, DestinationEncryptionContext: map[string]string{"moved": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob, EncryptionContext: map[string]string{"moved": "yes"}}); err != nil ||
		string(dec.Plaintext) != "card 4111" || aws.ToString(dec.KeyId) != aws.ToString(other.KeyMetadata.Arn) {
		t.Fatalf("after ReEncrypt: %v", err)
	}

	// Data keys.
	dk, err := admin.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
	if err != nil || len(dk.Plaintext) != 32 {
		t.Fatalf("GenerateDataKey: %v", err)
	}
	if back, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: ec}); err != nil || !bytes.Equal(back.Plaintext, dk.Plaintext) {
		t.Fatalf("the data key does not decrypt to itself: %v", err)
	}
	nop, err := admin.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: &keyID, NumberOfBytes: aws.Int32(64)})
	if err != nil || len(nop.CiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKeyWithoutPlaintext: %v", err)
	}
	_, err = admin.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID})
	wantCode(t, "data key without a size", err, "ValidationException")
	rnd, err := admin.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(48)})
	if err != nil || len(rnd.Plaintext) != 48 {
		t.Fatalf("GenerateRandom: %v", err)
	}
	pair, err := admin.GenerateDataKeyPair(ctx, &kms.GenerateDataKeyPairInput{KeyId: &keyID, KeyPairSpec: types.DataKeyPairSpecEccNistP256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(pair.PrivateKeyPlaintext); err != nil {
		t.Fatalf("the data key pair's private key: %v", err)
	}
	if back, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: pair.PrivateKeyCiphertextBlob}); err != nil || !bytes.Equal(back.Plaintext, pair.PrivateKeyPlaintext) {
		t.Fatalf("the data key pair's private key blob: %v", err)
	}

	// Rotation: new material encrypts, the old still decrypts.
	if _, err := admin.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: &keyID, RotationPeriodInDays: aws.Int32(90)}); err != nil {
		t.Fatal(err)
	}
	st, err := admin.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &keyID})
	if err != nil || !st.KeyRotationEnabled || aws.ToInt32(st.RotationPeriodInDays) != 90 || st.NextRotationDate == nil {
		t.Fatalf("GetKeyRotationStatus: %v %+v", err, st)
	}
	if _, err := admin.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	rots, err := admin.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &keyID})
	if err != nil || len(rots.Rotations) != 1 || rots.Rotations[0].RotationType != types.RotationTypeOnDemand {
		t.Fatalf("ListKeyRotations: %v %+v", err, rots)
	}
	enc2, err := admin.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("new"), EncryptionContext: ec})
	if err != nil || bytes.Equal(enc2.CiphertextBlob[:54], enc.CiphertextBlob[:54]) {
		t.Fatalf("Encrypt after rotation: %v (same header: new material not used)", err)
	}
	if dec, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}); err != nil || string(dec.Plaintext) != "card 4111" {
		t.Fatalf("a ciphertext from before the rotation: %v", err)
	}

	// Disabled and pending deletion refuse use.
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x")})
	wantAPIError[*types.DisabledException](t, "Encrypt with a disabled key", err)
	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: other.KeyMetadata.KeyId, PendingWindowInDays: aws.Int32(6)})
	wantCode(t, "a 6-day window", err, "ValidationException")
	sched, err := admin.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: other.KeyMetadata.KeyId, PendingWindowInDays: aws.Int32(7)})
	if err != nil || sched.KeyState != types.KeyStatePendingDeletion || sched.DeletionDate == nil || time.Until(*sched.DeletionDate) < 6*24*time.Hour {
		t.Fatalf("ScheduleKeyDeletion: %v %+v", err, sched)
	}
	_, err = admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: re.CiphertextBlob, EncryptionContext: map[string]string{"moved": "yes"}})
	wantAPIError[*types.KMSInvalidStateException](t, "Decrypt with a key pending deletion", err)
	if _, err := admin.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: other.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	if d, _ := admin.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: other.KeyMetadata.KeyId}); d.KeyMetadata.KeyState != types.KeyStateDisabled {
		t.Fatalf("after CancelKeyDeletion: %s, want Disabled", d.KeyMetadata.KeyState)
	}

	// Who may use the key: the default policy delegates to IAM, and app
	// has no IAM policy.
	_, err = app.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x")})
	wantCode(t, "app without a policy or grant", err, "AccessDeniedException")
	grant, err := admin.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: &appARN, RetiringPrincipal: &adminARN,
		Operations:  []types.GrantOperation{types.GrantOperationEncrypt, types.GrantOperationDecrypt},
		Constraints: &types.GrantConstraints{EncryptionContextSubset: map[string]string{"tenant": "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x"), GrantTokens: []string{"not-a-token"}})
	wantAPIError[*types.InvalidGrantTokenException](t, "a made-up grant token", err)
	ga, err := app.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("tenant a"), EncryptionContext: map[string]string{"tenant": "a", "x": "y"},
		GrantTokens: []string{aws.ToString(grant.GrantToken)}})
	if err != nil {
		t.Fatalf("Encrypt through the grant: %v", err)
	}
	_, err = app.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x"), EncryptionContext: map[string]string{"tenant": "b"}})
	wantCode(t, "outside the grant's constraint", err, "AccessDeniedException")
	_, err = app.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &keyID, KeySpec: types.DataKeySpecAes256, EncryptionContext: map[string]string{"tenant": "a"}})
	wantCode(t, "an operation the grant does not give", err, "AccessDeniedException")
	grants, err := admin.ListGrants(ctx, &kms.ListGrantsInput{KeyId: &keyID})
	if err != nil || len(grants.Grants) != 1 || aws.ToString(grants.Grants[0].GranteePrincipal) != appARN {
		t.Fatalf("ListGrants: %v %+v", err, grants)
	}
	if ret, err := admin.ListRetirableGrants(ctx, &kms.ListRetirableGrantsInput{RetiringPrincipal: &adminARN}); err != nil || len(ret.Grants) != 1 {
		t.Fatalf("ListRetirableGrants: %v", err)
	}
	if _, err := admin.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: grant.GrantToken}); err != nil {
		t.Fatal(err)
	}
	_, err = app.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ga.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "a", "x": "y"}})
	wantCode(t, "after the grant was retired", err, "AccessDeniedException")

	// The key policy decides: a direct grant of the policy lets app in
	// without IAM; an explicit Deny in it wins over admin's IAM Allow.
	pol := `{"Version": "2012-10-17", "Statement": [
		{"Effect": "Allow", "Principal": {"AWS": "` + api.MakeARN("iam", fx.c.iam.AccountID(), "root") + `"}, "Action": "kms:*", "Resource": "*"},
		{"Effect": "Allow", "Principal": {"AWS": "` + appARN + `"}, "Action": "kms:Decrypt", "Resource": "*"},
		{"Effect": "Deny", "Principal": {"AWS": "` + adminARN + `"}, "Action": "kms:Decrypt", "Resource": "*",
		 "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "a"}}}]}`
	if _, err := admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &keyID, Policy: aws.String(pol)}); err != nil {
		t.Fatal(err)
	}
	if dec, err := app.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ga.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "a", "x": "y"}}); err != nil || string(dec.Plaintext) != "tenant a" {
		t.Fatalf("app allowed by the key policy alone: %v", err)
	}
	_, err = admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ga.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "a", "x": "y"}})
	wantCode(t, "admin denied by the key policy though IAM allows", err, "AccessDeniedException")
	if _, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}); err != nil {
		t.Fatalf("the Deny's condition does not hold for another context: %v", err)
	}
	_, err = admin.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: &keyID, Policy: aws.String(`{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "` + appARN + `"}, "Action": "kms:Decrypt", "Resource": "*"}]}`)})
	wantAPIError[*types.MalformedPolicyDocumentException](t, "a policy that locks the caller out", err)
	gp, err := admin.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: &keyID})
	if err != nil || aws.ToString(gp.Policy) != pol {
		t.Fatalf("GetKeyPolicy: %v", err)
	}

	// Tags.
	if _, err := admin.TagResource(ctx, &kms.TagResourceInput{KeyId: &keyID, Tags: []types.Tag{{TagKey: aws.String("env"), TagValue: aws.String("prod")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UntagResource(ctx, &kms.UntagResourceInput{KeyId: &keyID, TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	tags, err := admin.ListResourceTags(ctx, &kms.ListResourceTagsInput{KeyId: &keyID})
	if err != nil || len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].TagKey) != "env" {
		t.Fatalf("ListResourceTags: %v %+v", err, tags)
	}

	// Asymmetric and HMAC keys.
	sk, err := admin.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("release v1.2.3")
	sig, err := admin.Sign(ctx, &kms.SignInput{KeyId: sk.KeyMetadata.KeyId, Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := admin.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: sk.KeyMetadata.KeyId})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.ParsePKIXPublicKey(pub.PublicKey)
	digest := sha256.Sum256(msg)
	if err != nil || !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), digest[:], sig.Signature) {
		t.Fatalf("the signature does not verify with the public key: %v", err)
	}
	if v, err := admin.Verify(ctx, &kms.VerifyInput{KeyId: sk.KeyMetadata.KeyId, Message: msg, Signature: sig.Signature, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}); err != nil || !v.SignatureValid {
		t.Fatalf("Verify: %v", err)
	}
	_, err = admin.Verify(ctx, &kms.VerifyInput{KeyId: sk.KeyMetadata.KeyId, Message: []byte("release v6.6.6"), Signature: sig.Signature, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAPIError[*types.KMSInvalidSignatureException](t, "Verify of another message", err)
	_, err = admin.Encrypt(ctx, &kms.EncryptInput{KeyId: sk.KeyMetadata.KeyId, Plaintext: []byte("x")})
	wantAPIError[*types.InvalidKeyUsageException](t, "Encrypt with a signing key", err)

	rk, err := admin.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
	if err != nil {
		t.Fatal(err)
	}
	rpub, _ := admin.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: rk.KeyMetadata.KeyId})
	rsaPub, err := x509.ParsePKIXPublicKey(rpub.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// A client encrypts offline with the public key; KMS decrypts.
	offline, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, rsaPub.(*rsa.PublicKey), []byte("offline secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := admin.Decrypt(ctx, &kms.DecryptInput{KeyId: rk.KeyMetadata.KeyId, CiphertextBlob: offline, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256}); err != nil || string(d.Plaintext) != "offline secret" {
		t.Fatalf("RSA Decrypt: %v", err)
	}

	hk, err := admin.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	if err != nil {
		t.Fatal(err)
	}
	mac, err := admin.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: hk.KeyMetadata.KeyId, Message: msg, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	if err != nil || len(mac.Mac) != 32 {
		t.Fatalf("GenerateMac: %v", err)
	}
	if v, err := admin.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: hk.KeyMetadata.KeyId, Message: msg, Mac: mac.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha256}); err != nil || !v.MacValid {
		t.Fatalf("VerifyMac: %v", err)
	}
	mac.Mac[0] ^= 1
	_, err = admin.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: hk.KeyMetadata.KeyId, Message: msg, Mac: mac.Mac, MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	wantAPIError[*types.KMSInvalidMacException](t, "VerifyMac of a changed MAC", err)

	// Imported material (origin EXTERNAL).
	ek, err := admin.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil || ek.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Fatalf("CreateKey EXTERNAL: %v", err)
	}
	params, err := admin.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: ek.KeyMetadata.KeyId,
		WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	wpub, err := x509.ParsePKIXPublicKey(params.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	mine := make([]byte, 32)
	rand.Read(mine)
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, wpub.(*rsa.PublicKey), mine, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ek.KeyMetadata.KeyId, ImportToken: []byte("forged"), EncryptedKeyMaterial: wrapped,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	wantAPIError[*types.InvalidImportTokenException](t, "a forged import token", err)
	if _, err := admin.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: ek.KeyMetadata.KeyId, ImportToken: params.ImportToken,
		EncryptedKeyMaterial: wrapped, ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}); err != nil {
		t.Fatal(err)
	}
	if e, err := admin.Encrypt(ctx, &kms.EncryptInput{KeyId: ek.KeyMetadata.KeyId, Plaintext: []byte("byok")}); err != nil {
		t.Fatalf("Encrypt with imported material: %v", err)
	} else if d, err := admin.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: e.CiphertextBlob}); err != nil || string(d.Plaintext) != "byok" {
		t.Fatalf("Decrypt with imported material: %v", err)
	}

	// Paging.
	page, err := admin.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(2)})
	if err != nil || len(page.Keys) != 2 || !page.Truncated || page.NextMarker == nil {
		t.Fatalf("ListKeys page 1: %v %+v", err, page)
	}
	all := len(page.Keys)
	for page.Truncated {
		if page, err = admin.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(2), Marker: page.NextMarker}); err != nil {
			t.Fatal(err)
		}
		all += len(page.Keys)
	}
	if all != 6 {
		t.Fatalf("ListKeys pages hold %d keys, want 6", all)
	}
	_, err = admin.ListKeys(ctx, &kms.ListKeysInput{Marker: aws.String("bogus!")})
	wantAPIError[*types.InvalidMarkerException](t, "a made-up marker", err)

	// The rest of the key life cycle and of the operations, each once.
	if _, err := admin.UpdateKeyDescription(ctx, &kms.UpdateKeyDescriptionInput{KeyId: &keyID, Description: aws.String("orders v2")}); err != nil {
		t.Fatal(err)
	}
	if d, _ := admin.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID}); aws.ToString(d.KeyMetadata.Description) != "orders v2" {
		t.Fatalf("UpdateKeyDescription: %q", aws.ToString(d.KeyMetadata.Description))
	}
	second, err := admin.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/orders"), TargetKeyId: second.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String("alias/orders"), TargetKeyId: sk.KeyMetadata.KeyId})
	wantCode(t, "UpdateAlias to a key of another spec", err, "ValidationException")
	aliases, err := admin.ListAliases(ctx, &kms.ListAliasesInput{KeyId: second.KeyMetadata.KeyId})
	if err != nil || len(aliases.Aliases) != 1 || aws.ToString(aliases.Aliases[0].AliasName) != "alias/orders" {
		t.Fatalf("ListAliases of the alias's new key: %v %+v", err, aliases)
	}
	if _, err := admin.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/orders")}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/orders")})
	wantAPIError[*types.NotFoundException](t, "DeleteAlias twice", err)
	_, err = admin.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/aws/mine"), TargetKeyId: &keyID})
	wantAPIError[*types.InvalidAliasNameException](t, "a reserved alias name", err)
	if _, err := admin.DisableKeyRotation(ctx, &kms.DisableKeyRotationInput{KeyId: &keyID}); err != nil {
		t.Fatal(err)
	}
	if st, _ := admin.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &keyID}); st.KeyRotationEnabled {
		t.Fatal("rotation still enabled after DisableKeyRotation")
	}
	_, err = admin.EnableKeyRotation(ctx, &kms.EnableKeyRotationInput{KeyId: sk.KeyMetadata.KeyId})
	wantAPIError[*types.UnsupportedOperationException](t, "rotation of an asymmetric key", err)
	pols, err := admin.ListKeyPolicies(ctx, &kms.ListKeyPoliciesInput{KeyId: &keyID})
	if err != nil || len(pols.PolicyNames) != 1 || pols.PolicyNames[0] != "default" {
		t.Fatalf("ListKeyPolicies: %v %+v", err, pols)
	}
	nopair, err := admin.GenerateDataKeyPairWithoutPlaintext(ctx, &kms.GenerateDataKeyPairWithoutPlaintextInput{KeyId: &keyID, KeyPairSpec: types.DataKeyPairSpecRsa2048})
	if err != nil || len(nopair.PublicKey) == 0 || len(nopair.PrivateKeyCiphertextBlob) == 0 {
		t.Fatalf("GenerateDataKeyPairWithoutPlaintext: %v", err)
	}
	g2, err := admin.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: &keyID, GranteePrincipal: &appARN, Operations: []types.GrantOperation{types.GrantOperationDescribeKey}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID}); err != nil {
		t.Fatalf("DescribeKey through a grant: %v", err)
	}
	if _, err := admin.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &keyID, GrantId: g2.GrantId}); err != nil {
		t.Fatal(err)
	}
	_, err = app.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID})
	wantCode(t, "DescribeKey after RevokeGrant", err, "AccessDeniedException")
	_, err = admin.RevokeGrant(ctx, &kms.RevokeGrantInput{KeyId: &keyID, GrantId: g2.GrantId})
	wantAPIError[*types.NotFoundException](t, "RevokeGrant twice", err)
	_, err = admin.RetireGrant(ctx, &kms.RetireGrantInput{GrantToken: aws.String("gone")})
	wantAPIError[*types.InvalidGrantTokenException](t, "RetireGrant of an unknown token", err)
	rs, err := admin.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa3072, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	pss, err := admin.Sign(ctx, &kms.SignInput{KeyId: rs.KeyMetadata.KeyId, Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecRsassaPssSha384})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := admin.Verify(ctx, &kms.VerifyInput{KeyId: rs.KeyMetadata.KeyId, Message: msg, Signature: pss.Signature, SigningAlgorithm: types.SigningAlgorithmSpecRsassaPssSha384}); err != nil || !v.SignatureValid {
		t.Fatalf("RSA-PSS Verify: %v", err)
	}
	_, err = admin.Sign(ctx, &kms.SignInput{KeyId: rs.KeyMetadata.KeyId, Message: msg, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
	wantAPIError[*types.InvalidKeyUsageException](t, "an ECDSA algorithm with an RSA key", err)
	_, err = admin.Encrypt(ctx, &kms.EncryptInput{KeyId: &keyID, Plaintext: []byte("x"), DryRun: aws.Bool(true)})
	wantAPIError[*types.DryRunOperationException](t, "Encrypt with DryRun", err)

	// The trail: KMS records with the key's ARN, and no plaintext,
	// data key or key material anywhere in it.
	recs, err := fx.c.trail.Lookup(audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	trail, _ := json.Marshal(recs)
	for _, secret := range [][]byte{[]byte("card 4111"), dk.Plaintext, pair.PrivateKeyPlaintext, mine, rnd.Plaintext} {
		for _, form := range []string{string(secret), base64.StdEncoding.EncodeToString(secret)} {
			if strings.Contains(string(trail), form) {
				t.Fatalf("the trail holds a secret (%q...)", form[:min(8, len(form))])
			}
		}
	}
	found := false
	for _, r := range recs {
		if r.EventSource == api.KMSEventSource && r.EventName == "Decrypt" && r.ErrorCode == "" &&
			len(r.Resources) == 1 && r.Resources[0].ARN == aws.ToString(md.Arn) && r.UserIdentity.ARN == appARN {
			found = true
		}
	}
	if !found {
		t.Fatal("the trail lacks app's Decrypt with the key's ARN")
	}
}
