package kms

import (
	"crypto/rand"
	"crypto/subtle"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/kms/material"
)

// importValidity is how long import parameters stay valid (KMS: 24 h).
const importValidity = 24 * time.Hour

func importContext(id string) []byte { return []byte("kms import wrapping key " + id) }

func (s *Service) getParametersForImport(cl *call, req *api.GetParametersForImportRequest) (*api.GetParametersForImportResponse, error) {
	spec := req.WrappingKeySpec
	if spec == "" {
		spec = "RSA_2048"
	}
	switch req.WrappingAlgorithm {
	case "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256":
	default:
		return nil, kmsErr(api.CodeKMSValidation, "WrappingAlgorithm %q is not supported", req.WrappingAlgorithm)
	}
	cl.set("kms:WrappingAlgorithm", req.WrappingAlgorithm)
	cl.set("kms:WrappingKeySpec", spec)
	priv, pub, err := material.WrappingKey(spec)
	if err != nil {
		return nil, materialErr(err)
	}
	defer clear(priv)
	token := make([]byte, 64)
	rand.Read(token)
	var until time.Time
	k, err := s.change(cl, req.KeyId, "GetParametersForImport", false, func(k *keyRecord) error {
		if k.Origin != api.OriginExternal {
			return kmsErr(api.CodeKMSUnsupported, "key %s has origin %s: only EXTERNAL keys take imported material", k.ID, k.Origin)
		}
		if k.State == api.KeyStatePendingDeletion {
			return invalidState(k)
		}
		wrapped, err := s.cfg.Keys.Wrap(keys.KMS, priv, importContext(k.ID))
		if err != nil {
			return err
		}
		until = s.now().Add(importValidity)
		k.Import = &importState{Token: token, Wrapped: wrapped, Algorithm: req.WrappingAlgorithm, KeySpec: spec, ValidUntil: until}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &api.GetParametersForImportResponse{KeyId: s.keyARN(k.ID), ImportToken: token, PublicKey: pub, ParametersValidTo: api.EpochOf(until)}, nil
}

func (s *Service) importKeyMaterial(cl *call, req *api.ImportKeyMaterialRequest) (*api.ImportKeyMaterialResponse, error) {
	model := req.ExpirationModel
	if model == "" {
		model = "KEY_MATERIAL_EXPIRES"
		if req.ValidTo == nil {
			model = "KEY_MATERIAL_DOES_NOT_EXPIRE"
		}
	}
	var validTo time.Time
	switch model {
	case "KEY_MATERIAL_EXPIRES":
		if req.ValidTo == nil {
			return nil, kmsErr(api.CodeKMSValidation, "ValidTo is required with KEY_MATERIAL_EXPIRES")
		}
		validTo = req.ValidTo.Time()
		if !validTo.After(s.now()) || validTo.After(s.now().Add(365*24*time.Hour)) {
			return nil, kmsErr(api.CodeKMSValidation, "ValidTo must be in the next 365 days")
		}
		cl.set("kms:ValidTo", validTo.UTC().Format(time.RFC3339))
	case "KEY_MATERIAL_DOES_NOT_EXPIRE":
		if req.ValidTo != nil {
			return nil, kmsErr(api.CodeKMSValidation, "ValidTo is not valid with KEY_MATERIAL_DOES_NOT_EXPIRE")
		}
	default:
		return nil, kmsErr(api.CodeKMSValidation, "ExpirationModel %q", model)
	}
	cl.set("kms:ExpirationModel", model)
	var mid string
	k, err := s.change(cl, req.KeyId, "ImportKeyMaterial", false, func(k *keyRecord) error {
		imp := k.Import
		switch {
		case k.Origin != api.OriginExternal:
			return kmsErr(api.CodeKMSUnsupported, "key %s has origin %s: only EXTERNAL keys take imported material", k.ID, k.Origin)
		case k.State == api.KeyStatePendingDeletion:
			return invalidState(k)
		case imp == nil || subtle.ConstantTimeCompare(imp.Token, req.ImportToken) != 1:
			return kmsErr(api.CodeKMSInvalidImportToken, "the import token is not valid for key %s", k.ID)
		case !s.now().Before(imp.ValidUntil):
			return kmsErr(api.CodeKMSExpiredImportToken, "the import parameters of key %s expired at %s", k.ID, imp.ValidUntil.Format(time.RFC3339))
		}
		priv, err := s.cfg.Keys.Unwrap(keys.KMS, imp.Wrapped, importContext(k.ID))
		if err != nil {
			return err
		}
		defer clear(priv)
		m, err := material.UnwrapImport(priv, imp.Algorithm, req.EncryptedKeyMaterial)
		if err != nil {
			return kmsErr(api.CodeKMSInvalidCiphertext, "the encrypted key material does not decrypt with the import parameters")
		}
		defer clear(m)
		if err := material.Validate(material.Spec(k.Spec), m); err != nil {
			return kmsErr(api.CodeKMSIncorrectKeyMaterial, "%v", err)
		}
		// Material imported again must be the same material: what was
		// encrypted under the key must still decrypt.
		if len(k.Versions) > 0 {
			old, err := s.materialOf(k, len(k.Versions)-1)
			if err != nil {
				return err
			}
			if subtle.ConstantTimeCompare(old.bytes(), m) != 1 {
				return kmsErr(api.CodeKMSIncorrectKeyMaterial, "key %s already had different material; import the same material again", k.ID)
			}
			k.Versions = k.Versions[:len(k.Versions)-1]
			s.forget(k.ID)
		}
		if err := s.appendMaterial(k, m, ""); err != nil {
			return err
		}
		mid = k.Versions[len(k.Versions)-1].MaterialID
		k.Import, k.ValidTo = nil, validTo
		if k.State == api.KeyStatePendingImport {
			k.State = api.KeyStateEnabled
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &api.ImportKeyMaterialResponse{KeyId: s.keyARN(k.ID), KeyMaterialId: mid}, nil
}
