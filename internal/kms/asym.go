package kms

import (
	"slices"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/kms/material"
)

func encryptionAlgorithms(k *keyRecord) []string {
	return material.EncryptionAlgorithms(material.Spec(k.Spec), material.Usage(k.Usage))
}

func signingAlgorithms(k *keyRecord) []string {
	return material.SigningAlgorithms(material.Spec(k.Spec), material.Usage(k.Usage))
}

func macAlgorithms(k *keyRecord) []string {
	if k.Usage != api.KeyUsageGenerateMac {
		return nil
	}
	return material.MacAlgorithms(material.Spec(k.Spec))
}

// current is the material of k's current version.
func (s *Service) current(k *keyRecord) ([]byte, error) {
	m, err := s.materialOf(k, len(k.Versions)-1)
	if err != nil {
		return nil, err
	}
	return m.bytes(), nil
}

func checkAlgorithm(k *keyRecord, alg string, valid []string) error {
	if !slices.Contains(valid, alg) {
		return kmsErr(api.CodeKMSInvalidKeyUsage, "algorithm %q is not valid for key %s (%s); valid: %v", alg, k.ID, k.Spec, valid)
	}
	return nil
}

// keyFor resolves the key ref and authorises op, checks the key's usage
// and that alg is one of algs(key), honours DryRun, and returns the key
// with its current material.
func (s *Service) keyFor(cl *call, ref, op, usage, alg string, algs func(*keyRecord) []string, dry bool) (keyRecord, []byte, error) {
	k, err := s.useKey(cl, ref, op, usage, nil)
	if err != nil {
		return k, nil, err
	}
	if err := checkAlgorithm(&k, alg, algs(&k)); err != nil {
		return k, nil, err
	}
	if dry {
		return k, nil, dryRun()
	}
	m, err := s.current(&k)
	return k, m, err
}

func messageType(t string) (string, error) {
	switch t {
	case "":
		return "RAW", nil
	case "RAW", "DIGEST":
		return t, nil
	}
	return "", kmsErr(api.CodeKMSValidation, "MessageType %q: want RAW or DIGEST", t)
}

func (s *Service) sign(cl *call, req *api.SignRequest) (*api.SignResponse, error) {
	cl.grantTokens = req.GrantTokens
	mt, err := messageType(req.MessageType)
	if err != nil {
		return nil, err
	}
	if len(req.Message) == 0 || len(req.Message) > maxPlaintext {
		return nil, kmsErr(api.CodeKMSValidation, "Message must be 1 to %d bytes", maxPlaintext)
	}
	cl.set("kms:SigningAlgorithm", req.SigningAlgorithm)
	cl.set("kms:MessageType", mt)
	k, m, err := s.keyFor(cl, req.KeyId, "Sign", api.KeyUsageSignVerify, req.SigningAlgorithm, signingAlgorithms, req.DryRun)
	if err != nil {
		return nil, err
	}
	sig, err := material.Sign(material.Spec(k.Spec), m, req.SigningAlgorithm, mt, req.Message)
	if err != nil {
		return nil, materialErr(err)
	}
	return &api.SignResponse{KeyId: s.keyARN(k.ID), Signature: sig, SigningAlgorithm: req.SigningAlgorithm}, nil
}

func (s *Service) verify(cl *call, req *api.VerifyRequest) (*api.VerifyResponse, error) {
	cl.grantTokens = req.GrantTokens
	mt, err := messageType(req.MessageType)
	if err != nil {
		return nil, err
	}
	if len(req.Message) == 0 || len(req.Message) > maxPlaintext || len(req.Signature) == 0 || len(req.Signature) > maxCiphertext {
		return nil, kmsErr(api.CodeKMSValidation, "Message must be 1 to %d bytes and Signature 1 to %d", maxPlaintext, maxCiphertext)
	}
	cl.set("kms:SigningAlgorithm", req.SigningAlgorithm)
	cl.set("kms:MessageType", mt)
	k, m, err := s.keyFor(cl, req.KeyId, "Verify", api.KeyUsageSignVerify, req.SigningAlgorithm, signingAlgorithms, req.DryRun)
	if err != nil {
		return nil, err
	}
	ok, err := material.Verify(material.Spec(k.Spec), m, req.SigningAlgorithm, mt, req.Message, req.Signature)
	if err != nil {
		return nil, materialErr(err)
	}
	if !ok {
		// As KMS: an invalid signature is an exception, not false.
		return nil, kmsErr(api.CodeKMSInvalidSignature, "the signature is not valid")
	}
	return &api.VerifyResponse{KeyId: s.keyARN(k.ID), SignatureValid: true, SigningAlgorithm: req.SigningAlgorithm}, nil
}

func (s *Service) getPublicKey(cl *call, req *api.KeyIDRequest) (*api.GetPublicKeyResponse, error) {
	cl.grantTokens = req.GrantTokens
	k, err := s.read(cl, req.KeyId, "GetPublicKey", true, nil)
	if err != nil {
		return nil, err
	}
	if err := usable(&k); err != nil {
		return nil, err
	}
	if k.Spec == api.KeySpecSymmetricDefault || k.Usage == api.KeyUsageGenerateMac {
		return nil, kmsErr(api.CodeKMSUnsupported, "key %s is not asymmetric: it has no public key", k.ID)
	}
	m, err := s.current(&k)
	if err != nil {
		return nil, err
	}
	pub, err := material.PublicKey(material.Spec(k.Spec), m)
	if err != nil {
		return nil, materialErr(err)
	}
	return &api.GetPublicKeyResponse{KeyId: s.keyARN(k.ID), PublicKey: pub, CustomerMasterKeySpec: k.Spec, KeySpec: k.Spec,
		KeyUsage: k.Usage, EncryptionAlgorithms: encryptionAlgorithms(&k), SigningAlgorithms: signingAlgorithms(&k)}, nil
}

func (s *Service) dataKeyPair(cl *call, req *api.GenerateDataKeyPairRequest, op string) (*api.GenerateDataKeyPairResponse, error) {
	cl.grantTokens = req.GrantTokens
	cl.set("kms:DataKeyPairSpec", req.KeyPairSpec)
	k, err := s.useKey(cl, req.KeyId, op, api.KeyUsageEncryptDecrypt, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	if k.Spec != api.KeySpecSymmetricDefault {
		return nil, kmsErr(api.CodeKMSInvalidKeyUsage, "data key pairs are encrypted under symmetric keys; %s is %s", k.ID, k.Spec)
	}
	if req.DryRun {
		return nil, dryRun()
	}
	priv, pub, err := material.DataKeyPair(req.KeyPairSpec)
	if err != nil {
		return nil, materialErr(err)
	}
	ct, err := s.seal(&k, priv, req.EncryptionContext)
	if err != nil {
		clear(priv)
		return nil, err
	}
	return &api.GenerateDataKeyPairResponse{PrivateKeyCiphertextBlob: ct, PrivateKeyPlaintext: priv, PublicKey: pub,
		KeyId: s.keyARN(k.ID), KeyPairSpec: req.KeyPairSpec}, nil
}

func (s *Service) generateDataKeyPair(cl *call, req *api.GenerateDataKeyPairRequest) (*api.GenerateDataKeyPairResponse, error) {
	return s.dataKeyPair(cl, req, "GenerateDataKeyPair")
}

func (s *Service) generateDataKeyPairWithoutPlaintext(cl *call, req *api.GenerateDataKeyPairRequest) (*api.GenerateDataKeyPairResponse, error) {
	out, err := s.dataKeyPair(cl, req, "GenerateDataKeyPairWithoutPlaintext")
	if out != nil {
		clear(out.PrivateKeyPlaintext)
		out.PrivateKeyPlaintext = nil
	}
	return out, err
}

func (s *Service) generateMac(cl *call, req *api.GenerateMacRequest) (*api.GenerateMacResponse, error) {
	cl.grantTokens = req.GrantTokens
	if len(req.Message) == 0 || len(req.Message) > maxPlaintext {
		return nil, kmsErr(api.CodeKMSValidation, "Message must be 1 to %d bytes", maxPlaintext)
	}
	cl.set("kms:MacAlgorithm", req.MacAlgorithm)
	k, m, err := s.keyFor(cl, req.KeyId, "GenerateMac", api.KeyUsageGenerateMac, req.MacAlgorithm, macAlgorithms, req.DryRun)
	if err != nil {
		return nil, err
	}
	mac, err := material.Mac(material.Spec(k.Spec), m, req.MacAlgorithm, req.Message)
	if err != nil {
		return nil, materialErr(err)
	}
	return &api.GenerateMacResponse{Mac: mac, MacAlgorithm: req.MacAlgorithm, KeyId: s.keyARN(k.ID)}, nil
}

func (s *Service) verifyMac(cl *call, req *api.VerifyMacRequest) (*api.VerifyMacResponse, error) {
	cl.grantTokens = req.GrantTokens
	if len(req.Message) == 0 || len(req.Message) > maxPlaintext || len(req.Mac) == 0 || len(req.Mac) > 6144 {
		return nil, kmsErr(api.CodeKMSValidation, "Message must be 1 to %d bytes and Mac 1 to 6144", maxPlaintext)
	}
	cl.set("kms:MacAlgorithm", req.MacAlgorithm)
	k, m, err := s.keyFor(cl, req.KeyId, "VerifyMac", api.KeyUsageGenerateMac, req.MacAlgorithm, macAlgorithms, req.DryRun)
	if err != nil {
		return nil, err
	}
	ok, err := material.VerifyMac(material.Spec(k.Spec), m, req.MacAlgorithm, req.Message, req.Mac)
	if err != nil {
		return nil, materialErr(err)
	}
	if !ok {
		return nil, kmsErr(api.CodeKMSInvalidMac, "the MAC is not valid")
	}
	return &api.VerifyMacResponse{KeyId: s.keyARN(k.ID), MacValid: true, MacAlgorithm: req.MacAlgorithm}, nil
}
