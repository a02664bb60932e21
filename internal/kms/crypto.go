package kms

import (
	"crypto/rand"
	"errors"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/kms/blob"
	"github.com/azote/azote/internal/kms/material"
	"github.com/azote/azote/internal/store"
)

// Limits of the cryptographic operations, as KMS has them.
const (
	maxPlaintext    = 4096
	maxCiphertext   = 6144
	maxRandom       = 1024
	maxContextBytes = 8192
)

// usable refuses a key that cannot be used now.
func usable(k *keyRecord) error {
	switch k.State {
	case api.KeyStateEnabled:
		return nil
	case api.KeyStateDisabled:
		return kmsErr(api.CodeKMSDisabled, "%s is disabled.", k.ID)
	}
	return kmsErr(api.CodeKMSInvalidState, "%s is %s and cannot be used.", k.ID, k.State)
}

func checkUsage(k *keyRecord, usage string) error {
	if k.Usage != usage {
		return kmsErr(api.CodeKMSInvalidKeyUsage, "key %s is for %s, not %s", k.ID, k.Usage, usage)
	}
	return nil
}

func checkContext(ctx map[string]string) error {
	n := 0
	for k, v := range ctx {
		if k == "" {
			return kmsErr(api.CodeKMSValidation, "encryption context keys must not be empty")
		}
		n += len(k) + len(v)
	}
	if n > maxContextBytes {
		return kmsErr(api.CodeKMSValidation, "the encryption context is larger than %d bytes", maxContextBytes)
	}
	return nil
}

// useKey resolves ref (aliases allowed), authorises op with the
// encryption context enc, and checks the key's state and usage.
func (s *Service) useKey(cl *call, ref, op, usage string, enc map[string]string) (keyRecord, error) {
	if err := checkContext(enc); err != nil {
		return keyRecord{}, err
	}
	cl.setContext(enc)
	k, err := s.read(cl, ref, op, true, enc)
	if err != nil {
		return k, err
	}
	if err := usable(&k); err != nil {
		return k, err
	}
	return k, checkUsage(&k, usage)
}

// seal encrypts plaintext under k's current material.
func (s *Service) seal(k *keyRecord, plaintext []byte, enc map[string]string) ([]byte, error) {
	v := len(k.Versions) - 1
	m, err := s.materialOf(k, v)
	if err != nil {
		return nil, err
	}
	return blob.SealAEAD(m.aead, blob.Header{KeyID: k.ID, Version: uint32(v)}, plaintext, enc)
}

func (s *Service) encrypt(cl *call, req *api.EncryptRequest) (*api.EncryptResponse, error) {
	cl.grantTokens = req.GrantTokens
	if len(req.Plaintext) == 0 || len(req.Plaintext) > maxPlaintext {
		return nil, kmsErr(api.CodeKMSValidation, "Plaintext must be 1 to %d bytes", maxPlaintext)
	}
	alg := req.EncryptionAlgorithm
	if alg == "" {
		alg = api.KeySpecSymmetricDefault
	}
	cl.set("kms:EncryptionAlgorithm", alg)
	k, err := s.useKey(cl, req.KeyId, "Encrypt", api.KeyUsageEncryptDecrypt, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	if req.DryRun {
		return nil, dryRun()
	}
	ct, err := s.encryptWith(&k, alg, req.Plaintext, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &api.EncryptResponse{CiphertextBlob: ct, KeyId: s.keyARN(k.ID), EncryptionAlgorithm: alg}, nil
}

// encryptWith encrypts under k with alg: the blob format for symmetric
// keys, RSA-OAEP for RSA keys.
func (s *Service) encryptWith(k *keyRecord, alg string, plaintext []byte, enc map[string]string) ([]byte, error) {
	if k.Spec == api.KeySpecSymmetricDefault {
		if alg != api.KeySpecSymmetricDefault {
			return nil, kmsErr(api.CodeKMSInvalidKeyUsage, "algorithm %s is not valid for a symmetric key", alg)
		}
		return s.seal(k, plaintext, enc)
	}
	if len(enc) > 0 {
		return nil, kmsErr(api.CodeKMSValidation, "an encryption context is not valid with an asymmetric key")
	}
	m, err := s.materialOf(k, len(k.Versions)-1)
	if err != nil {
		return nil, err
	}
	ct, err := material.AsymEncrypt(material.Spec(k.Spec), m.bytes(), alg, plaintext)
	return ct, materialErr(err)
}

// materialErr maps the material package's refusals to exceptions.
func materialErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, material.ErrInvalidAlgorithm):
		return kmsErr(api.CodeKMSInvalidKeyUsage, "%v", err)
	case errors.Is(err, material.ErrInvalidCiphertext):
		return kmsErr(api.CodeKMSInvalidCiphertext, "")
	case errors.Is(err, material.ErrTooLarge), errors.Is(err, material.ErrUnsupported), errors.Is(err, material.ErrInvalidMessage):
		return kmsErr(api.CodeKMSValidation, "%v", err)
	case errors.Is(err, material.ErrInvalidMaterial):
		return kmsErr(api.CodeKMSIncorrectKeyMaterial, "%v", err)
	}
	return err
}

// open decrypts a symmetric blob, finding its key from the blob; ref,
// when set, must name that key (IncorrectKeyException otherwise). op is
// authorised on the key found.
func (s *Service) open(cl *call, ref, op string, ct []byte, enc map[string]string) (keyRecord, []byte, error) {
	if len(ct) == 0 || len(ct) > maxCiphertext {
		return keyRecord{}, nil, kmsErr(api.CodeKMSValidation, "CiphertextBlob must be 1 to %d bytes", maxCiphertext)
	}
	if err := checkContext(enc); err != nil {
		return keyRecord{}, nil, err
	}
	cl.setContext(enc)
	h, err := blob.ParseHeader(ct)
	if err != nil {
		return keyRecord{}, nil, kmsErr(api.CodeKMSInvalidCiphertext, "")
	}
	found, err := view(s, func(tx store.Tx) (keyRef, error) {
		// A key deleted at the end of its waiting period is not found:
		// nothing can decrypt what it encrypted.
		found, err := s.resolve(tx, h.KeyID, false)
		if err != nil {
			return keyRef{}, err
		}
		if ref != "" {
			named, err := s.resolve(tx, ref, true)
			if err != nil {
				return keyRef{}, err
			}
			if named.key.ID != found.key.ID {
				return keyRef{}, kmsErr(api.CodeKMSIncorrectKey, "The key ID in the request does not identify a CMK that can perform this operation.")
			}
			found.alias = named.alias
		}
		return found, nil
	})
	if err != nil {
		return keyRecord{}, nil, err
	}
	// Outside the read transaction (authorize says why).
	if err := s.authorize(s.cfg.Store.View, cl, op, found, enc); err != nil {
		return keyRecord{}, nil, err
	}
	k := found.key
	if err := usable(&k); err != nil {
		return k, nil, err
	}
	if err := checkUsage(&k, api.KeyUsageEncryptDecrypt); err != nil {
		return k, nil, err
	}
	if int(h.Version) >= len(k.Versions) {
		return k, nil, kmsErr(api.CodeKMSInvalidCiphertext, "")
	}
	m, err := s.materialOf(&k, int(h.Version))
	if err != nil {
		return k, nil, err
	}
	p, err := blob.OpenAEAD(m.aead, ct, enc)
	if err != nil {
		return k, nil, kmsErr(api.CodeKMSInvalidCiphertext, "")
	}
	return k, p, nil
}

func (s *Service) decrypt(cl *call, req *api.DecryptRequest) (*api.DecryptResponse, error) {
	cl.grantTokens = req.GrantTokens
	alg := req.EncryptionAlgorithm
	if alg == "" {
		alg = api.KeySpecSymmetricDefault
	}
	cl.set("kms:EncryptionAlgorithm", alg)
	if alg != api.KeySpecSymmetricDefault {
		return s.decryptAsym(cl, req, alg)
	}
	k, p, err := s.open(cl, req.KeyId, "Decrypt", req.CiphertextBlob, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	if req.DryRun {
		clear(p)
		return nil, dryRun()
	}
	return &api.DecryptResponse{KeyId: s.keyARN(k.ID), Plaintext: p, EncryptionAlgorithm: alg}, nil
}

func (s *Service) decryptAsym(cl *call, req *api.DecryptRequest, alg string) (*api.DecryptResponse, error) {
	if req.KeyId == "" {
		return nil, kmsErr(api.CodeKMSValidation, "KeyId is required to decrypt with %s", alg)
	}
	if len(req.EncryptionContext) > 0 {
		return nil, kmsErr(api.CodeKMSValidation, "an encryption context is not valid with an asymmetric key")
	}
	k, err := s.useKey(cl, req.KeyId, "Decrypt", api.KeyUsageEncryptDecrypt, nil)
	if err != nil {
		return nil, err
	}
	if req.DryRun {
		return nil, dryRun()
	}
	p, err := s.decryptWith(&k, alg, req.CiphertextBlob)
	if err != nil {
		return nil, err
	}
	return &api.DecryptResponse{KeyId: s.keyARN(k.ID), Plaintext: p, EncryptionAlgorithm: alg}, nil
}

func (s *Service) decryptWith(k *keyRecord, alg string, ct []byte) ([]byte, error) {
	if k.Spec == api.KeySpecSymmetricDefault {
		return nil, kmsErr(api.CodeKMSInvalidKeyUsage, "algorithm %s is not valid for a symmetric key", alg)
	}
	m, err := s.materialOf(k, len(k.Versions)-1)
	if err != nil {
		return nil, err
	}
	p, err := material.AsymDecrypt(material.Spec(k.Spec), m.bytes(), alg, ct)
	return p, materialErr(err)
}

func (s *Service) reEncrypt(cl *call, req *api.ReEncryptRequest) (*api.ReEncryptResponse, error) {
	cl.grantTokens = req.GrantTokens
	srcAlg, dstAlg := req.SourceEncryptionAlgorithm, req.DestinationEncryptionAlgorithm
	if srcAlg == "" {
		srcAlg = api.KeySpecSymmetricDefault
	}
	if dstAlg == "" {
		dstAlg = api.KeySpecSymmetricDefault
	}
	var src keyRecord
	var p []byte
	var err error
	srcCall := &call{caller: cl.caller, grantTokens: req.GrantTokens}
	srcCall.set("kms:EncryptionAlgorithm", srcAlg)
	if srcAlg == api.KeySpecSymmetricDefault {
		src, p, err = s.open(srcCall, req.SourceKeyId, "ReEncryptFrom", req.CiphertextBlob, req.SourceEncryptionContext)
	} else {
		if req.SourceKeyId == "" {
			return nil, kmsErr(api.CodeKMSValidation, "SourceKeyId is required with %s", srcAlg)
		}
		src, err = s.useKey(srcCall, req.SourceKeyId, "ReEncryptFrom", api.KeyUsageEncryptDecrypt, nil)
		if err == nil {
			p, err = s.decryptWith(&src, srcAlg, req.CiphertextBlob)
		}
	}
	cl.resources = append(cl.resources, srcCall.resources...)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	dstCall := &call{caller: cl.caller, grantTokens: req.GrantTokens, resources: cl.resources}
	dstCall.set("kms:EncryptionAlgorithm", dstAlg)
	dst, err := s.useKey(dstCall, req.DestinationKeyId, "ReEncryptTo", api.KeyUsageEncryptDecrypt, req.DestinationEncryptionContext)
	cl.resources = dstCall.resources
	if err != nil {
		return nil, err
	}
	if req.DryRun {
		return nil, dryRun()
	}
	ct, err := s.encryptWith(&dst, dstAlg, p, req.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	return &api.ReEncryptResponse{CiphertextBlob: ct, SourceKeyId: s.keyARN(src.ID), KeyId: s.keyARN(dst.ID),
		SourceEncryptionAlgorithm: srcAlg, DestinationEncryptionAlgorithm: dstAlg}, nil
}

// dataKeyLength reads the NumberOfBytes / KeySpec pair: exactly one.
func dataKeyLength(n int32, spec string) (int, error) {
	switch {
	case n != 0 && spec != "":
		return 0, kmsErr(api.CodeKMSValidation, "give KeySpec or NumberOfBytes, not both")
	case spec == "AES_256":
		return 32, nil
	case spec == "AES_128":
		return 16, nil
	case spec != "":
		return 0, kmsErr(api.CodeKMSValidation, "KeySpec %q: want AES_256 or AES_128", spec)
	case n < 1 || n > maxRandom:
		return 0, kmsErr(api.CodeKMSValidation, "NumberOfBytes must be 1 to %d (or give KeySpec)", maxRandom)
	}
	return int(n), nil
}

func (s *Service) dataKey(cl *call, req *api.GenerateDataKeyRequest, op string) (*api.GenerateDataKeyResponse, error) {
	cl.grantTokens = req.GrantTokens
	n, err := dataKeyLength(req.NumberOfBytes, req.KeySpec)
	if err != nil {
		return nil, err
	}
	k, err := s.useKey(cl, req.KeyId, op, api.KeyUsageEncryptDecrypt, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	if k.Spec != api.KeySpecSymmetricDefault {
		return nil, kmsErr(api.CodeKMSInvalidKeyUsage, "data keys are made under symmetric keys; %s is %s", k.ID, k.Spec)
	}
	if req.DryRun {
		return nil, dryRun()
	}
	p := make([]byte, n)
	rand.Read(p)
	ct, err := s.seal(&k, p, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &api.GenerateDataKeyResponse{CiphertextBlob: ct, Plaintext: p, KeyId: s.keyARN(k.ID)}, nil
}

func (s *Service) generateDataKey(cl *call, req *api.GenerateDataKeyRequest) (*api.GenerateDataKeyResponse, error) {
	return s.dataKey(cl, req, "GenerateDataKey")
}

func (s *Service) generateDataKeyWithoutPlaintext(cl *call, req *api.GenerateDataKeyRequest) (*api.GenerateDataKeyResponse, error) {
	out, err := s.dataKey(cl, req, "GenerateDataKeyWithoutPlaintext")
	if out != nil {
		clear(out.Plaintext)
		out.Plaintext = nil
	}
	return out, err
}

func (s *Service) generateRandom(cl *call, req *api.GenerateRandomRequest) (*api.GenerateRandomResponse, error) {
	if req.CustomKeyStoreId != "" {
		return nil, kmsErr(api.CodeKMSUnsupported, "custom key stores are not supported")
	}
	if req.NumberOfBytes < 1 || req.NumberOfBytes > maxRandom {
		return nil, kmsErr(api.CodeKMSValidation, "NumberOfBytes must be 1 to %d", maxRandom)
	}
	if err := s.authorizeAccount(cl, "GenerateRandom"); err != nil {
		return nil, err
	}
	p := make([]byte, req.NumberOfBytes)
	rand.Read(p)
	return &api.GenerateRandomResponse{Plaintext: p}, nil
}
