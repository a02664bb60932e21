package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable error code. Scripts match on it; never rename one.
type Code string

// Error codes. Each maps to one HTTP status.
const (
	CodeMalformedRequest       Code = "MalformedRequest"
	CodeRequestTooLarge        Code = "RequestTooLarge"
	CodeInvalidParameter       Code = "InvalidParameterValue"
	CodeInvalidName            Code = "InvalidName"
	CodeInvalidVCPUCount       Code = "InvalidVCPUCount"
	CodeInvalidMemorySize      Code = "InvalidMemorySize"
	CodeInsufficientMemory     Code = "InsufficientMemory"
	CodeImageNotFound          Code = "ImageNotFound"
	CodeInstanceNotFound       Code = "InstanceNotFound"
	CodeNameInUse              Code = "NameInUse"
	CodeIncorrectInstanceState Code = "IncorrectInstanceState"
	CodeTerminationProtected   Code = "TerminationProtected"
	CodeImageInUse             Code = "ImageInUse"
	CodeDigestMismatch         Code = "DigestMismatch"
	CodeBlobNotFound           Code = "BlobNotFound"
	CodeEngineFailure          Code = "EngineFailure"
	CodeAccessDenied           Code = "AccessDenied"
	CodeNotFound               Code = "NotFound"
	CodeTimeout                Code = "Timeout"
	CodeVolumeNotFound         Code = "VolumeNotFound"
	CodeVolumeInUse            Code = "VolumeInUse"
	CodeInvalidVolumeSize      Code = "InvalidVolumeSize"
	CodeDeletionProtected      Code = "DeletionProtected"
	CodeIncorrectVolumeState   Code = "IncorrectVolumeState"
	CodeIncompleteUpload       Code = "IncompleteUpload" // a body shorter or longer than it declared
	CodeDuplicateTagKeys       Code = "DuplicateTagKeys" // tag keys that differ only in case
	CodeInternal               Code = "InternalError"
	// CodeAuditUnavailable refuses a call whose audit record could not be
	// written: no call is answered unaudited.
	CodeAuditUnavailable Code = "AuditTrailUnavailable"
	// CodeQuotaExceeded refuses a blob or volume that would take the host
	// past its storage quota for them.
	CodeQuotaExceeded Code = "QuotaExceeded"
	// CodeStateStoreUnavailable refuses a call that needs the fleet's
	// shared state store (etcd) while this host cannot reach it.
	CodeStateStoreUnavailable Code = "StateStoreUnavailable"

	// Network (VPCs, subnets, security groups, network interfaces): the
	// NotFound codes as the other compute nouns', the rest as EC2 names
	// them where it has a name.
	CodeVPCNotFound               Code = "VpcNotFound"
	CodeSubnetNotFound            Code = "SubnetNotFound"
	CodeSecurityGroupNotFound     Code = "SecurityGroupNotFound"
	CodeNetworkInterfaceNotFound  Code = "NetworkInterfaceNotFound"
	CodeInvalidVPCRange           Code = "InvalidVpcRange"
	CodeInvalidSubnetRange        Code = "InvalidSubnetRange"
	CodeSubnetConflict            Code = "SubnetConflict" // overlapping subnets of one VPC
	CodeInvalidIPAddress          Code = "InvalidIpAddress"
	CodeAddressInUse              Code = "AddressInUse"
	CodeAddressNotInSubnet        Code = "AddressNotInSubnet"
	CodeInsufficientFreeAddresses Code = "InsufficientFreeAddressesInSubnet"
	CodeInvalidGroup              Code = "InvalidGroup" // a security group of another VPC
	CodeDependencyViolation       Code = "DependencyViolation"
	CodeCannotDelete              Code = "CannotDelete" // a VPC's default security group
	CodeDuplicateRule             Code = "DuplicateRule"
	CodeRuleNotFound              Code = "RuleNotFound"
	CodeNetworkInterfaceInUse     Code = "NetworkInterfaceInUse"
	CodeIncorrectInterfaceState   Code = "IncorrectNetworkInterfaceState"
	CodeOperationNotPermitted     Code = "OperationNotPermitted" // detaching a primary interface
	CodeHostGatewayConflict       Code = "HostGatewayConflict"   // two host-gateway VPCs whose blocks overlap

	// Key pairs: NotFound as the other compute nouns' (a taken name is
	// NameInUse, as theirs).
	CodeKeyPairNotFound    Code = "KeyPairNotFound"
	CodeInvalidKeyFormat   Code = "InvalidKeyFormat"   // not one OpenSSH public key
	CodeUnsupportedKeyType Code = "UnsupportedKeyType" // ecdsa, dsa, RSA under MinRSABits

	// Authentication (SigV4), as AWS names them.
	CodeMissingAuthentication Code = "MissingAuthenticationToken"
	CodeIncompleteSignature   Code = "IncompleteSignature"
	CodeInvalidClientTokenID  Code = "InvalidClientTokenId"
	CodeSignatureDoesNotMatch Code = "SignatureDoesNotMatch"
	CodeRequestExpired        Code = "RequestExpired"
	CodeRequestReplayed       Code = "RequestReplayed"
	CodeExpiredToken          Code = "ExpiredToken"
	CodeThrottling            Code = "Throttling"

	// IAM and STS.
	CodeNoSuchEntity              Code = "NoSuchEntity"
	CodeEntityAlreadyExists       Code = "EntityAlreadyExists"
	CodeLimitExceeded             Code = "LimitExceeded"
	CodeMalformedPolicyDocument   Code = "MalformedPolicyDocument"
	CodeDeleteConflict            Code = "DeleteConflict"
	CodeInvalidAuthenticationCode Code = "InvalidAuthenticationCode"
	CodeMFALocked                 Code = "MFADeviceLocked"
	CodeAccountNotInitialized     Code = "AccountNotInitialized"
	CodeAccountAlreadyInitialized Code = "AccountAlreadyInitialized"
	CodeRootAccessKeysDisabled    Code = "RootAccessKeysDisabled"
	CodeUnknownOperation          Code = "UnknownOperation"

	// Exec sessions (azote instance exec).
	CodeAgentUnavailable  Code = "AgentUnavailable"  // no guest agent answered
	CodeCommandNotStarted Code = "CommandNotStarted" // the agent could not run it (no such user, no such command)
	CodeTooManySessions   Code = "TooManyExecSessions"
)

var codeStatus = map[Code]int{
	CodeDuplicateTagKeys:       http.StatusBadRequest,
	CodeMalformedRequest:       http.StatusBadRequest,
	CodeRequestTooLarge:        http.StatusRequestEntityTooLarge,
	CodeInvalidParameter:       http.StatusBadRequest,
	CodeInvalidName:            http.StatusBadRequest,
	CodeInvalidVCPUCount:       http.StatusBadRequest,
	CodeInvalidMemorySize:      http.StatusBadRequest,
	CodeInsufficientMemory:     http.StatusConflict,
	CodeImageNotFound:          http.StatusNotFound,
	CodeInstanceNotFound:       http.StatusNotFound,
	CodeNameInUse:              http.StatusConflict,
	CodeIncorrectInstanceState: http.StatusConflict,
	CodeTerminationProtected:   http.StatusConflict,
	CodeImageInUse:             http.StatusConflict,
	CodeDigestMismatch:         http.StatusBadRequest,
	CodeBlobNotFound:           http.StatusBadRequest,
	CodeEngineFailure:          http.StatusInternalServerError,
	CodeAccessDenied:           http.StatusForbidden,
	CodeNotFound:               http.StatusNotFound,
	CodeTimeout:                http.StatusRequestTimeout,
	CodeVolumeNotFound:         http.StatusNotFound,
	CodeVolumeInUse:            http.StatusConflict,
	CodeInvalidVolumeSize:      http.StatusBadRequest,
	CodeDeletionProtected:      http.StatusConflict,
	CodeIncorrectVolumeState:   http.StatusConflict,
	CodeIncompleteUpload:       http.StatusBadRequest,
	CodeInternal:               http.StatusInternalServerError,
	CodeAuditUnavailable:       http.StatusServiceUnavailable,
	CodeQuotaExceeded:          http.StatusConflict,
	CodeStateStoreUnavailable:  http.StatusServiceUnavailable,

	CodeVPCNotFound:               http.StatusNotFound,
	CodeSubnetNotFound:            http.StatusNotFound,
	CodeSecurityGroupNotFound:     http.StatusNotFound,
	CodeNetworkInterfaceNotFound:  http.StatusNotFound,
	CodeInvalidVPCRange:           http.StatusBadRequest,
	CodeInvalidSubnetRange:        http.StatusBadRequest,
	CodeSubnetConflict:            http.StatusConflict,
	CodeInvalidIPAddress:          http.StatusBadRequest,
	CodeAddressInUse:              http.StatusConflict,
	CodeAddressNotInSubnet:        http.StatusBadRequest,
	CodeInsufficientFreeAddresses: http.StatusConflict,
	CodeInvalidGroup:              http.StatusBadRequest,
	CodeDependencyViolation:       http.StatusConflict,
	CodeCannotDelete:              http.StatusConflict,
	CodeDuplicateRule:             http.StatusConflict,
	CodeRuleNotFound:              http.StatusNotFound,
	CodeNetworkInterfaceInUse:     http.StatusConflict,
	CodeIncorrectInterfaceState:   http.StatusConflict,
	CodeOperationNotPermitted:     http.StatusConflict,
	CodeHostGatewayConflict:       http.StatusConflict,

	CodeKeyPairNotFound:    http.StatusNotFound,
	CodeInvalidKeyFormat:   http.StatusBadRequest,
	CodeUnsupportedKeyType: http.StatusBadRequest,

	CodeMissingAuthentication: http.StatusForbidden,
	CodeIncompleteSignature:   http.StatusForbidden,
	CodeInvalidClientTokenID:  http.StatusForbidden,
	CodeSignatureDoesNotMatch: http.StatusForbidden,
	CodeRequestExpired:        http.StatusForbidden,
	CodeRequestReplayed:       http.StatusForbidden,
	CodeExpiredToken:          http.StatusForbidden,
	CodeThrottling:            http.StatusTooManyRequests,

	CodeNoSuchEntity:              http.StatusNotFound,
	CodeEntityAlreadyExists:       http.StatusConflict,
	CodeLimitExceeded:             http.StatusConflict,
	CodeMalformedPolicyDocument:   http.StatusBadRequest,
	CodeDeleteConflict:            http.StatusConflict,
	CodeInvalidAuthenticationCode: http.StatusForbidden,
	CodeMFALocked:                 http.StatusForbidden,
	CodeAccountNotInitialized:     http.StatusConflict,
	CodeAccountAlreadyInitialized: http.StatusConflict,
	CodeRootAccessKeysDisabled:    http.StatusForbidden,
	CodeUnknownOperation:          http.StatusNotFound,

	CodeAgentUnavailable:  http.StatusServiceUnavailable,
	CodeCommandNotStarted: http.StatusBadRequest,
	CodeTooManySessions:   http.StatusTooManyRequests,
}

// Error is what crosses the API boundary: {"code": "...", "message": "..."}.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Status is the HTTP status of the error's code.
func (e *Error) Status() int {
	if s, ok := codeStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Errorf makes an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError converts any error to an *Error; errors without a code become
// InternalError with a generic message, so internals do not leak.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error"}
}

// IsCode tells whether err carries code.
func IsCode(err error, code Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
