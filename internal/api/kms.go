package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// The KMS speaks AWS KMS's own protocol (AWS JSON 1.1, X-Amz-Target
// TrentService.<Operation>, SigV4 service "kms"), so the AWS SDKs' KMS
// clients and `aws kms` work against azoted unchanged. These are its
// request and response members as the SDKs model them; a member azote
// does not support is left out (the SDKs ignore what they do not get,
// and a request member azote does not know is ignored, as AWS does).

// KMSService is the SigV4 signing name and the IAM service prefix of the
// KMS; KMSEventSource names it in the trail.
const (
	KMSService      = "kms"
	KMSEventSource  = "kms.azote"
	KMSTargetPrefix = "TrentService."
)

// JSON11ContentType is the content type of AWS JSON 1.1 requests and
// answers.
const JSON11ContentType = "application/x-amz-json-1.1"

// KMS exceptions, named as AWS names them: the SDKs map __type to their
// typed errors by these names.
const (
	CodeKMSAccessDenied         Code = "AccessDeniedException"
	CodeKMSAlreadyExists        Code = "AlreadyExistsException"
	CodeKMSDisabled             Code = "DisabledException"
	CodeKMSDryRun               Code = "DryRunOperationException"
	CodeKMSExpiredImportToken   Code = "ExpiredImportTokenException"
	CodeKMSIncorrectKey         Code = "IncorrectKeyException"
	CodeKMSIncorrectKeyMaterial Code = "IncorrectKeyMaterialException"
	CodeKMSInternal             Code = "KMSInternalException"
	CodeKMSInvalidAliasName     Code = "InvalidAliasNameException"
	CodeKMSInvalidARN           Code = "InvalidArnException"
	CodeKMSInvalidCiphertext    Code = "InvalidCiphertextException"
	CodeKMSInvalidGrantID       Code = "InvalidGrantIdException"
	CodeKMSInvalidGrantToken    Code = "InvalidGrantTokenException"
	CodeKMSInvalidImportToken   Code = "InvalidImportTokenException"
	CodeKMSInvalidKeyUsage      Code = "InvalidKeyUsageException"
	CodeKMSInvalidMarker        Code = "InvalidMarkerException"
	CodeKMSInvalidState         Code = "KMSInvalidStateException"
	CodeKMSInvalidSignature     Code = "KMSInvalidSignatureException"
	CodeKMSInvalidMac           Code = "KMSInvalidMacException"
	CodeKMSLimitExceeded        Code = "LimitExceededException"
	CodeKMSMalformedPolicy      Code = "MalformedPolicyDocumentException"
	CodeKMSNotFound             Code = "NotFoundException"
	CodeKMSTag                  Code = "TagException"
	CodeKMSUnsupported          Code = "UnsupportedOperationException"
	CodeKMSValidation           Code = "ValidationException"
	CodeKMSSerialization        Code = "SerializationException"
	CodeKMSUnknownOperation     Code = "UnknownOperationException"

	// Authentication failures of an AWS JSON request, as AWS answers
	// them (the SDKs' retry and error logic knows these names).
	CodeAWSUnrecognizedClient  Code = "UnrecognizedClientException"
	CodeAWSInvalidSignature    Code = "InvalidSignatureException"
	CodeAWSIncompleteSignature Code = "IncompleteSignatureException"
	CodeAWSMissingAuth         Code = "MissingAuthenticationTokenException"
	CodeAWSExpiredToken        Code = "ExpiredTokenException"
	CodeAWSThrottling          Code = "ThrottlingException"
)

// EpochTime is a timestamp of AWS JSON 1.1: a JSON number of seconds
// since the epoch, with a fraction.
type EpochTime time.Time

// MarshalJSON writes seconds with millisecond precision.
func (t EpochTime) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(tt.UnixMilli())/1000, 'f', -1, 64), nil
}

// UnmarshalJSON reads a number of seconds.
func (t *EpochTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = EpochTime{}
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return fmt.Errorf("timestamp %v out of range", f)
	}
	sec, frac := math.Modf(f)
	*t = EpochTime(time.Unix(int64(sec), int64(frac*1e9)).UTC())
	return nil
}

// Time is t as a time.Time.
func (t EpochTime) Time() time.Time { return time.Time(t) }

// EpochOf returns a pointer to t as an EpochTime, nil for the zero time.
func EpochOf(t time.Time) *EpochTime {
	if t.IsZero() {
		return nil
	}
	e := EpochTime(t)
	return &e
}

// KMS key states, usages, specs and origins (AWS's names).
const (
	KeyStateEnabled         = "Enabled"
	KeyStateDisabled        = "Disabled"
	KeyStatePendingDeletion = "PendingDeletion"
	KeyStatePendingImport   = "PendingImport"
	KeyStateCreating        = "Creating"

	KeyUsageEncryptDecrypt = "ENCRYPT_DECRYPT"
	KeyUsageSignVerify     = "SIGN_VERIFY"
	KeyUsageGenerateMac    = "GENERATE_VERIFY_MAC"

	KeySpecSymmetricDefault = "SYMMETRIC_DEFAULT"

	OriginAWSKMS   = "AWS_KMS"
	OriginExternal = "EXTERNAL"
)

// KMSTag is a tag of a KMS key: TagKey/TagValue, as KMS names them.
type KMSTag struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

// KeyMetadata describes a KMS key (DescribeKey, CreateKey).
type KeyMetadata struct {
	AWSAccountId                string     `json:"AWSAccountId"`
	KeyId                       string     `json:"KeyId"`
	Arn                         string     `json:"Arn"`
	CreationDate                *EpochTime `json:"CreationDate,omitempty"`
	Enabled                     bool       `json:"Enabled"`
	Description                 string     `json:"Description"`
	KeyUsage                    string     `json:"KeyUsage"`
	KeyState                    string     `json:"KeyState"`
	DeletionDate                *EpochTime `json:"DeletionDate,omitempty"`
	ValidTo                     *EpochTime `json:"ValidTo,omitempty"`
	Origin                      string     `json:"Origin"`
	ExpirationModel             string     `json:"ExpirationModel,omitempty"`
	KeyManager                  string     `json:"KeyManager"`
	CustomerMasterKeySpec       string     `json:"CustomerMasterKeySpec"`
	KeySpec                     string     `json:"KeySpec"`
	EncryptionAlgorithms        []string   `json:"EncryptionAlgorithms,omitempty"`
	SigningAlgorithms           []string   `json:"SigningAlgorithms,omitempty"`
	MacAlgorithms               []string   `json:"MacAlgorithms,omitempty"`
	MultiRegion                 bool       `json:"MultiRegion"`
	PendingDeletionWindowInDays *int32     `json:"PendingDeletionWindowInDays,omitempty"`
	CurrentKeyMaterialId        string     `json:"CurrentKeyMaterialId,omitempty"`
}

// Requests and answers of the key life cycle.
type (
	CreateKeyRequest struct {
		Policy                         string   `json:"Policy"`
		Description                    string   `json:"Description"`
		KeyUsage                       string   `json:"KeyUsage"`
		KeySpec                        string   `json:"KeySpec"`
		CustomerMasterKeySpec          string   `json:"CustomerMasterKeySpec"`
		Origin                         string   `json:"Origin"`
		BypassPolicyLockoutSafetyCheck bool     `json:"BypassPolicyLockoutSafetyCheck"`
		Tags                           []KMSTag `json:"Tags"`
		MultiRegion                    bool     `json:"MultiRegion"`
		CustomKeyStoreId               string   `json:"CustomKeyStoreId"`
		XksKeyId                       string   `json:"XksKeyId"`
	}
	CreateKeyResponse struct {
		KeyMetadata KeyMetadata `json:"KeyMetadata"`
	}
	KeyIDRequest struct {
		KeyId       string   `json:"KeyId"`
		GrantTokens []string `json:"GrantTokens,omitempty"`
	}
	DescribeKeyResponse struct {
		KeyMetadata KeyMetadata `json:"KeyMetadata"`
	}
	ListKeysRequest struct {
		Limit  int32  `json:"Limit"`
		Marker string `json:"Marker"`
	}
	KeyListEntry struct {
		KeyId  string `json:"KeyId"`
		KeyArn string `json:"KeyArn"`
	}
	ListKeysResponse struct {
		Keys       []KeyListEntry `json:"Keys"`
		NextMarker string         `json:"NextMarker,omitempty"`
		Truncated  bool           `json:"Truncated"`
	}
	UpdateKeyDescriptionRequest struct {
		KeyId       string `json:"KeyId"`
		Description string `json:"Description"`
	}
	ScheduleKeyDeletionRequest struct {
		KeyId               string `json:"KeyId"`
		PendingWindowInDays int32  `json:"PendingWindowInDays"`
	}
	ScheduleKeyDeletionResponse struct {
		KeyId               string     `json:"KeyId"`
		DeletionDate        *EpochTime `json:"DeletionDate,omitempty"`
		KeyState            string     `json:"KeyState"`
		PendingWindowInDays int32      `json:"PendingWindowInDays"`
	}
	CancelKeyDeletionResponse struct {
		KeyId string `json:"KeyId"`
	}
	EnableKeyRotationRequest struct {
		KeyId                string `json:"KeyId"`
		RotationPeriodInDays int32  `json:"RotationPeriodInDays"`
	}
	GetKeyRotationStatusResponse struct {
		KeyId                     string     `json:"KeyId"`
		KeyRotationEnabled        bool       `json:"KeyRotationEnabled"`
		RotationPeriodInDays      int32      `json:"RotationPeriodInDays,omitempty"`
		NextRotationDate          *EpochTime `json:"NextRotationDate,omitempty"`
		OnDemandRotationStartDate *EpochTime `json:"OnDemandRotationStartDate,omitempty"`
	}
	RotateKeyOnDemandResponse struct {
		KeyId string `json:"KeyId"`
	}
	ListKeyRotationsRequest struct {
		KeyId  string `json:"KeyId"`
		Limit  int32  `json:"Limit"`
		Marker string `json:"Marker"`
	}
	RotationsListEntry struct {
		KeyId         string     `json:"KeyId"`
		KeyMaterialId string     `json:"KeyMaterialId,omitempty"`
		RotationDate  *EpochTime `json:"RotationDate,omitempty"`
		RotationType  string     `json:"RotationType"`
	}
	ListKeyRotationsResponse struct {
		Rotations  []RotationsListEntry `json:"Rotations"`
		NextMarker string               `json:"NextMarker,omitempty"`
		Truncated  bool                 `json:"Truncated"`
	}
)

// Aliases.
type (
	AliasRequest struct {
		AliasName   string `json:"AliasName"`
		TargetKeyId string `json:"TargetKeyId"`
	}
	ListAliasesRequest struct {
		KeyId  string `json:"KeyId"`
		Limit  int32  `json:"Limit"`
		Marker string `json:"Marker"`
	}
	AliasListEntry struct {
		AliasName       string     `json:"AliasName"`
		AliasArn        string     `json:"AliasArn"`
		TargetKeyId     string     `json:"TargetKeyId,omitempty"`
		CreationDate    *EpochTime `json:"CreationDate,omitempty"`
		LastUpdatedDate *EpochTime `json:"LastUpdatedDate,omitempty"`
	}
	ListAliasesResponse struct {
		Aliases    []AliasListEntry `json:"Aliases"`
		NextMarker string           `json:"NextMarker,omitempty"`
		Truncated  bool             `json:"Truncated"`
	}
)

// Cryptographic operations. Binary members are []byte: encoding/json
// writes and reads them as standard base64 with padding, as the SDKs do.
type (
	EncryptRequest struct {
		KeyId               string            `json:"KeyId"`
		Plaintext           []byte            `json:"Plaintext"`
		EncryptionContext   map[string]string `json:"EncryptionContext"`
		GrantTokens         []string          `json:"GrantTokens"`
		EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
		DryRun              bool              `json:"DryRun"`
	}
	EncryptResponse struct {
		CiphertextBlob      []byte `json:"CiphertextBlob"`
		KeyId               string `json:"KeyId"`
		EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
	}
	DecryptRequest struct {
		CiphertextBlob      []byte            `json:"CiphertextBlob"`
		EncryptionContext   map[string]string `json:"EncryptionContext"`
		GrantTokens         []string          `json:"GrantTokens"`
		KeyId               string            `json:"KeyId"`
		EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
		DryRun              bool              `json:"DryRun"`
	}
	DecryptResponse struct {
		KeyId               string `json:"KeyId"`
		Plaintext           []byte `json:"Plaintext,omitempty"`
		EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
	}
	ReEncryptRequest struct {
		CiphertextBlob                 []byte            `json:"CiphertextBlob"`
		SourceEncryptionContext        map[string]string `json:"SourceEncryptionContext"`
		SourceKeyId                    string            `json:"SourceKeyId"`
		DestinationKeyId               string            `json:"DestinationKeyId"`
		DestinationEncryptionContext   map[string]string `json:"DestinationEncryptionContext"`
		SourceEncryptionAlgorithm      string            `json:"SourceEncryptionAlgorithm"`
		DestinationEncryptionAlgorithm string            `json:"DestinationEncryptionAlgorithm"`
		GrantTokens                    []string          `json:"GrantTokens"`
		DryRun                         bool              `json:"DryRun"`
	}
	ReEncryptResponse struct {
		CiphertextBlob                 []byte `json:"CiphertextBlob"`
		SourceKeyId                    string `json:"SourceKeyId"`
		KeyId                          string `json:"KeyId"`
		SourceEncryptionAlgorithm      string `json:"SourceEncryptionAlgorithm"`
		DestinationEncryptionAlgorithm string `json:"DestinationEncryptionAlgorithm"`
	}
	GenerateDataKeyRequest struct {
		KeyId             string            `json:"KeyId"`
		EncryptionContext map[string]string `json:"EncryptionContext"`
		NumberOfBytes     int32             `json:"NumberOfBytes"`
		KeySpec           string            `json:"KeySpec"`
		GrantTokens       []string          `json:"GrantTokens"`
		DryRun            bool              `json:"DryRun"`
	}
	GenerateDataKeyResponse struct {
		CiphertextBlob []byte `json:"CiphertextBlob"`
		Plaintext      []byte `json:"Plaintext,omitempty"`
		KeyId          string `json:"KeyId"`
	}
	GenerateDataKeyPairRequest struct {
		KeyId             string            `json:"KeyId"`
		EncryptionContext map[string]string `json:"EncryptionContext"`
		KeyPairSpec       string            `json:"KeyPairSpec"`
		GrantTokens       []string          `json:"GrantTokens"`
		DryRun            bool              `json:"DryRun"`
	}
	GenerateDataKeyPairResponse struct {
		PrivateKeyCiphertextBlob []byte `json:"PrivateKeyCiphertextBlob"`
		PrivateKeyPlaintext      []byte `json:"PrivateKeyPlaintext,omitempty"`
		PublicKey                []byte `json:"PublicKey"`
		KeyId                    string `json:"KeyId"`
		KeyPairSpec              string `json:"KeyPairSpec"`
	}
	GenerateRandomRequest struct {
		NumberOfBytes    int32  `json:"NumberOfBytes"`
		CustomKeyStoreId string `json:"CustomKeyStoreId"`
	}
	GenerateRandomResponse struct {
		Plaintext []byte `json:"Plaintext"`
	}
	SignRequest struct {
		KeyId            string   `json:"KeyId"`
		Message          []byte   `json:"Message"`
		MessageType      string   `json:"MessageType"`
		GrantTokens      []string `json:"GrantTokens"`
		SigningAlgorithm string   `json:"SigningAlgorithm"`
		DryRun           bool     `json:"DryRun"`
	}
	SignResponse struct {
		KeyId            string `json:"KeyId"`
		Signature        []byte `json:"Signature"`
		SigningAlgorithm string `json:"SigningAlgorithm"`
	}
	VerifyRequest struct {
		KeyId            string   `json:"KeyId"`
		Message          []byte   `json:"Message"`
		MessageType      string   `json:"MessageType"`
		Signature        []byte   `json:"Signature"`
		SigningAlgorithm string   `json:"SigningAlgorithm"`
		GrantTokens      []string `json:"GrantTokens"`
		DryRun           bool     `json:"DryRun"`
	}
	VerifyResponse struct {
		KeyId            string `json:"KeyId"`
		SignatureValid   bool   `json:"SignatureValid"`
		SigningAlgorithm string `json:"SigningAlgorithm"`
	}
	GetPublicKeyResponse struct {
		KeyId                 string   `json:"KeyId"`
		PublicKey             []byte   `json:"PublicKey"`
		CustomerMasterKeySpec string   `json:"CustomerMasterKeySpec"`
		KeySpec               string   `json:"KeySpec"`
		KeyUsage              string   `json:"KeyUsage"`
		EncryptionAlgorithms  []string `json:"EncryptionAlgorithms,omitempty"`
		SigningAlgorithms     []string `json:"SigningAlgorithms,omitempty"`
	}
	GenerateMacRequest struct {
		KeyId        string   `json:"KeyId"`
		Message      []byte   `json:"Message"`
		MacAlgorithm string   `json:"MacAlgorithm"`
		GrantTokens  []string `json:"GrantTokens"`
		DryRun       bool     `json:"DryRun"`
	}
	GenerateMacResponse struct {
		Mac          []byte `json:"Mac"`
		MacAlgorithm string `json:"MacAlgorithm"`
		KeyId        string `json:"KeyId"`
	}
	VerifyMacRequest struct {
		KeyId        string   `json:"KeyId"`
		Message      []byte   `json:"Message"`
		MacAlgorithm string   `json:"MacAlgorithm"`
		Mac          []byte   `json:"Mac"`
		GrantTokens  []string `json:"GrantTokens"`
		DryRun       bool     `json:"DryRun"`
	}
	VerifyMacResponse struct {
		KeyId        string `json:"KeyId"`
		MacValid     bool   `json:"MacValid"`
		MacAlgorithm string `json:"MacAlgorithm"`
	}
)

// Key policies and tags.
type (
	KeyPolicyRequest struct {
		KeyId                          string `json:"KeyId"`
		PolicyName                     string `json:"PolicyName"`
		Policy                         string `json:"Policy"`
		BypassPolicyLockoutSafetyCheck bool   `json:"BypassPolicyLockoutSafetyCheck"`
	}
	GetKeyPolicyResponse struct {
		Policy     string `json:"Policy"`
		PolicyName string `json:"PolicyName"`
	}
	ListKeyPoliciesRequest struct {
		KeyId  string `json:"KeyId"`
		Limit  int32  `json:"Limit"`
		Marker string `json:"Marker"`
	}
	ListKeyPoliciesResponse struct {
		PolicyNames []string `json:"PolicyNames"`
		NextMarker  string   `json:"NextMarker,omitempty"`
		Truncated   bool     `json:"Truncated"`
	}
	TagResourceRequest struct {
		KeyId string   `json:"KeyId"`
		Tags  []KMSTag `json:"Tags"`
	}
	UntagResourceRequest struct {
		KeyId   string   `json:"KeyId"`
		TagKeys []string `json:"TagKeys"`
	}
	ListResourceTagsRequest struct {
		KeyId  string `json:"KeyId"`
		Limit  int32  `json:"Limit"`
		Marker string `json:"Marker"`
	}
	ListResourceTagsResponse struct {
		Tags       []KMSTag `json:"Tags"`
		NextMarker string   `json:"NextMarker,omitempty"`
		Truncated  bool     `json:"Truncated"`
	}
)

// Grants.
type (
	GrantConstraints struct {
		EncryptionContextSubset map[string]string `json:"EncryptionContextSubset,omitempty"`
		EncryptionContextEquals map[string]string `json:"EncryptionContextEquals,omitempty"`
	}
	CreateGrantRequest struct {
		KeyId             string            `json:"KeyId"`
		GranteePrincipal  string            `json:"GranteePrincipal"`
		RetiringPrincipal string            `json:"RetiringPrincipal"`
		Operations        []string          `json:"Operations"`
		Constraints       *GrantConstraints `json:"Constraints"`
		GrantTokens       []string          `json:"GrantTokens"`
		Name              string            `json:"Name"`
		DryRun            bool              `json:"DryRun"`
	}
	CreateGrantResponse struct {
		GrantToken string `json:"GrantToken"`
		GrantId    string `json:"GrantId"`
	}
	ListGrantsRequest struct {
		KeyId            string `json:"KeyId"`
		Limit            int32  `json:"Limit"`
		Marker           string `json:"Marker"`
		GrantId          string `json:"GrantId"`
		GranteePrincipal string `json:"GranteePrincipal"`
	}
	ListRetirableGrantsRequest struct {
		RetiringPrincipal string `json:"RetiringPrincipal"`
		Limit             int32  `json:"Limit"`
		Marker            string `json:"Marker"`
	}
	GrantListEntry struct {
		KeyId             string            `json:"KeyId"`
		GrantId           string            `json:"GrantId"`
		Name              string            `json:"Name,omitempty"`
		CreationDate      *EpochTime        `json:"CreationDate,omitempty"`
		GranteePrincipal  string            `json:"GranteePrincipal"`
		RetiringPrincipal string            `json:"RetiringPrincipal,omitempty"`
		IssuingAccount    string            `json:"IssuingAccount"`
		Operations        []string          `json:"Operations"`
		Constraints       *GrantConstraints `json:"Constraints,omitempty"`
	}
	ListGrantsResponse struct {
		Grants     []GrantListEntry `json:"Grants"`
		NextMarker string           `json:"NextMarker,omitempty"`
		Truncated  bool             `json:"Truncated"`
	}
	RetireGrantRequest struct {
		GrantToken string `json:"GrantToken"`
		KeyId      string `json:"KeyId"`
		GrantId    string `json:"GrantId"`
		DryRun     bool   `json:"DryRun"`
	}
	RevokeGrantRequest struct {
		KeyId   string `json:"KeyId"`
		GrantId string `json:"GrantId"`
		DryRun  bool   `json:"DryRun"`
	}
)

// Imported key material.
type (
	GetParametersForImportRequest struct {
		KeyId             string `json:"KeyId"`
		WrappingAlgorithm string `json:"WrappingAlgorithm"`
		WrappingKeySpec   string `json:"WrappingKeySpec"`
	}
	GetParametersForImportResponse struct {
		KeyId             string     `json:"KeyId"`
		ImportToken       []byte     `json:"ImportToken"`
		PublicKey         []byte     `json:"PublicKey"`
		ParametersValidTo *EpochTime `json:"ParametersValidTo,omitempty"`
	}
	ImportKeyMaterialRequest struct {
		KeyId                string     `json:"KeyId"`
		ImportToken          []byte     `json:"ImportToken"`
		EncryptedKeyMaterial []byte     `json:"EncryptedKeyMaterial"`
		ValidTo              *EpochTime `json:"ValidTo"`
		ExpirationModel      string     `json:"ExpirationModel"`
	}
	ImportKeyMaterialResponse struct {
		KeyId         string `json:"KeyId,omitempty"`
		KeyMaterialId string `json:"KeyMaterialId,omitempty"`
	}
)

// JSONResult is what an AWS JSON 1.1 service hands the gateway for one
// call: the answer, and what the call's audit record says beyond who
// called (no plaintext and no key material ever: the service builds
// Request and Response from the identifying members only).
type JSONResult struct {
	Out       any
	Resources []string // ARNs the call acted on
	ReadOnly  bool
	Request   map[string]any
	Response  map[string]any
}
