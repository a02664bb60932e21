package gateway

import (
	"errors"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/controller/instances"
	"github.com/azote/azote/internal/controller/keypairs"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/image"
)

// codes maps the refusals of the domain packages to their wire codes (and
// so, through api.Code, their HTTP statuses): the one place where a
// domain error becomes something a client matches on. Checked in order
// with errors.Is, never by text.
var codes = []struct {
	err  error
	code api.Code
}{
	{refusal.ErrInvalidParameter, api.CodeInvalidParameter},
	{refusal.ErrInvalidName, api.CodeInvalidName},
	{refusal.ErrNameInUse, api.CodeNameInUse},
	{refusal.ErrQuotaExceeded, api.CodeQuotaExceeded},
	{refusal.ErrUnavailable, api.CodeStateStoreUnavailable},

	{images.ErrNotFound, api.CodeImageNotFound},
	{images.ErrInUse, api.CodeImageInUse},
	{images.ErrBlobNotFound, api.CodeBlobNotFound},
	{images.ErrMissingBlob, api.CodeEngineFailure},
	{image.ErrDigestMismatch, api.CodeDigestMismatch},
	{image.ErrBlobTooLarge, api.CodeRequestTooLarge},
	{image.ErrQuota, api.CodeQuotaExceeded},

	{volumes.ErrNotFound, api.CodeVolumeNotFound},
	{volumes.ErrInUse, api.CodeVolumeInUse},
	{volumes.ErrIncorrectState, api.CodeIncorrectVolumeState},
	{volumes.ErrInvalidSize, api.CodeInvalidVolumeSize},
	{volumes.ErrDeletionProtected, api.CodeDeletionProtected},
	{volumes.ErrIncompleteUpload, api.CodeIncompleteUpload},
	{volumes.ErrDigestMismatch, api.CodeDigestMismatch},

	{instances.ErrNotFound, api.CodeInstanceNotFound},
	{instances.ErrIncorrectState, api.CodeIncorrectInstanceState},
	{instances.ErrTerminationProtected, api.CodeTerminationProtected},
	{instances.ErrInvalidVCPUs, api.CodeInvalidVCPUCount},
	{instances.ErrInvalidMemory, api.CodeInvalidMemorySize},
	{instances.ErrInsufficientMemory, api.CodeInsufficientMemory},
	{instances.ErrEngine, api.CodeEngineFailure},
	{instances.ErrAgentUnavailable, api.CodeAgentUnavailable},
	{instances.ErrCommandNotStarted, api.CodeCommandNotStarted},
	{instances.ErrTooManySessions, api.CodeTooManySessions},

	{vpcs.ErrVPCNotFound, api.CodeVPCNotFound},
	{vpcs.ErrSubnetNotFound, api.CodeSubnetNotFound},
	{vpcs.ErrGroupNotFound, api.CodeSecurityGroupNotFound},
	{vpcs.ErrInterfaceNotFound, api.CodeNetworkInterfaceNotFound},
	{vpcs.ErrInvalidVPCRange, api.CodeInvalidVPCRange},
	{vpcs.ErrInvalidSubnetRange, api.CodeInvalidSubnetRange},
	{vpcs.ErrSubnetConflict, api.CodeSubnetConflict},
	{vpcs.ErrInvalidIPAddress, api.CodeInvalidIPAddress},
	{vpcs.ErrAddressInUse, api.CodeAddressInUse},
	{vpcs.ErrAddressNotInSubnet, api.CodeAddressNotInSubnet},
	{vpcs.ErrAddressesExhausted, api.CodeInsufficientFreeAddresses},
	{vpcs.ErrInvalidGroup, api.CodeInvalidGroup},
	{vpcs.ErrDependencyViolation, api.CodeDependencyViolation},
	{vpcs.ErrCannotDelete, api.CodeCannotDelete},
	{vpcs.ErrDuplicateRule, api.CodeDuplicateRule},
	{vpcs.ErrRuleNotFound, api.CodeRuleNotFound},
	{vpcs.ErrInterfaceInUse, api.CodeNetworkInterfaceInUse},
	{vpcs.ErrIncorrectInterfaceState, api.CodeIncorrectInterfaceState},
	{vpcs.ErrOperationNotPermitted, api.CodeOperationNotPermitted},
	{vpcs.ErrLimitExceeded, api.CodeLimitExceeded},
	{vpcs.ErrHostGatewayConflict, api.CodeHostGatewayConflict},

	{keypairs.ErrNotFound, api.CodeKeyPairNotFound},
	{keypairs.ErrInvalidFormat, api.CodeInvalidKeyFormat},
	{keypairs.ErrUnsupportedType, api.CodeUnsupportedKeyType},
}

// WireError is the wire error for err: an *api.Error as it is (IAM and the
// gateway's own refusals speak the wire vocabulary), a domain refusal as
// its code with the owner's sentence, and anything else InternalError, whose text
// is not the caller's to read.
func WireError(err error) *api.Error {
	var e *api.Error
	if errors.As(err, &e) {
		return e
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			// The owner's sentence, without what wrapped it on the way.
			msg := err.Error()
			var r *refusal.Error
			if errors.As(err, &r) {
				msg = r.Message
			}
			return &api.Error{Code: c.code, Message: msg}
		}
	}
	return api.AsError(err)
}
