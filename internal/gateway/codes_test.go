package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/controller/instances"
	"github.com/azote/azote/internal/controller/keypairs"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/image"
)

// The owners' refusals reach the caller with the codes and statuses
// clients match on (the same as before the owners had errors of their
// own), and with the owner's sentence; wrapping does not hide them.
func TestWireError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   api.Code
		status int
	}{
		{refusal.ErrInvalidParameter, api.CodeInvalidParameter, http.StatusBadRequest},
		{refusal.ErrInvalidName, api.CodeInvalidName, http.StatusBadRequest},
		{refusal.ErrNameInUse, api.CodeNameInUse, http.StatusConflict},
		{refusal.ErrQuotaExceeded, api.CodeQuotaExceeded, http.StatusConflict},
		{refusal.ErrUnavailable, api.CodeStateStoreUnavailable, http.StatusServiceUnavailable},
		{images.ErrNotFound, api.CodeImageNotFound, http.StatusNotFound},
		{images.ErrInUse, api.CodeImageInUse, http.StatusConflict},
		{images.ErrBlobNotFound, api.CodeBlobNotFound, http.StatusBadRequest},
		{images.ErrMissingBlob, api.CodeEngineFailure, http.StatusInternalServerError},
		{image.ErrDigestMismatch, api.CodeDigestMismatch, http.StatusBadRequest},
		{image.ErrBlobTooLarge, api.CodeRequestTooLarge, http.StatusRequestEntityTooLarge},
		{image.ErrQuota, api.CodeQuotaExceeded, http.StatusConflict},
		{volumes.ErrNotFound, api.CodeVolumeNotFound, http.StatusNotFound},
		{volumes.ErrInUse, api.CodeVolumeInUse, http.StatusConflict},
		{volumes.ErrIncorrectState, api.CodeIncorrectVolumeState, http.StatusConflict},
		{volumes.ErrInvalidSize, api.CodeInvalidVolumeSize, http.StatusBadRequest},
		{volumes.ErrDeletionProtected, api.CodeDeletionProtected, http.StatusConflict},
		{volumes.ErrIncompleteUpload, api.CodeIncompleteUpload, http.StatusBadRequest},
		{volumes.ErrDigestMismatch, api.CodeDigestMismatch, http.StatusBadRequest},
		{instances.ErrNotFound, api.CodeInstanceNotFound, http.StatusNotFound},
		{instances.ErrIncorrectState, api.CodeIncorrectInstanceState, http.StatusConflict},
		{instances.ErrTerminationProtected, api.CodeTerminationProtected, http.StatusConflict},
		{instances.ErrInvalidVCPUs, api.CodeInvalidVCPUCount, http.StatusBadRequest},
		{instances.ErrInvalidMemory, api.CodeInvalidMemorySize, http.StatusBadRequest},
		{instances.ErrInsufficientMemory, api.CodeInsufficientMemory, http.StatusConflict},
		{instances.ErrEngine, api.CodeEngineFailure, http.StatusInternalServerError},
		{instances.ErrAgentUnavailable, api.CodeAgentUnavailable, http.StatusServiceUnavailable},
		{instances.ErrCommandNotStarted, api.CodeCommandNotStarted, http.StatusBadRequest},
		{instances.ErrTooManySessions, api.CodeTooManySessions, http.StatusTooManyRequests},
		{vpcs.ErrVPCNotFound, api.CodeVPCNotFound, http.StatusNotFound},
		{vpcs.ErrSubnetNotFound, api.CodeSubnetNotFound, http.StatusNotFound},
		{vpcs.ErrGroupNotFound, api.CodeSecurityGroupNotFound, http.StatusNotFound},
		{vpcs.ErrInterfaceNotFound, api.CodeNetworkInterfaceNotFound, http.StatusNotFound},
		{vpcs.ErrInvalidVPCRange, api.CodeInvalidVPCRange, http.StatusBadRequest},
		{vpcs.ErrInvalidSubnetRange, api.CodeInvalidSubnetRange, http.StatusBadRequest},
		{vpcs.ErrSubnetConflict, api.CodeSubnetConflict, http.StatusConflict},
		{vpcs.ErrInvalidIPAddress, api.CodeInvalidIPAddress, http.StatusBadRequest},
		{vpcs.ErrAddressInUse, api.CodeAddressInUse, http.StatusConflict},
		{vpcs.ErrAddressNotInSubnet, api.CodeAddressNotInSubnet, http.StatusBadRequest},
		{vpcs.ErrAddressesExhausted, api.CodeInsufficientFreeAddresses, http.StatusConflict},
		{vpcs.ErrInvalidGroup, api.CodeInvalidGroup, http.StatusBadRequest},
		{vpcs.ErrDependencyViolation, api.CodeDependencyViolation, http.StatusConflict},
		{vpcs.ErrCannotDelete, api.CodeCannotDelete, http.StatusConflict},
		{vpcs.ErrDuplicateRule, api.CodeDuplicateRule, http.StatusConflict},
		{vpcs.ErrRuleNotFound, api.CodeRuleNotFound, http.StatusNotFound},
		{vpcs.ErrInterfaceInUse, api.CodeNetworkInterfaceInUse, http.StatusConflict},
		{vpcs.ErrIncorrectInterfaceState, api.CodeIncorrectInterfaceState, http.StatusConflict},
		{vpcs.ErrOperationNotPermitted, api.CodeOperationNotPermitted, http.StatusConflict},
		{vpcs.ErrLimitExceeded, api.CodeLimitExceeded, http.StatusConflict},
		{vpcs.ErrHostGatewayConflict, api.CodeHostGatewayConflict, http.StatusConflict},
		{keypairs.ErrNotFound, api.CodeKeyPairNotFound, http.StatusNotFound},
		{keypairs.ErrInvalidFormat, api.CodeInvalidKeyFormat, http.StatusBadRequest},
		{keypairs.ErrUnsupportedType, api.CodeUnsupportedKeyType, http.StatusBadRequest},
	} {
		err := fmt.Errorf("in a transaction: %w", refusal.New(tc.err, "the sentence for %s", tc.err))
		e := WireError(err)
		if e.Code != tc.code || e.Status() != tc.status || e.Message != "the sentence for "+tc.err.Error() {
			t.Errorf("%v: answered %s %d %q, want %s %d and the owner's sentence", tc.err, e.Code, e.Status(), e.Message, tc.code, tc.status)
		}
	}
	// Every sentinel of the table is tested above.
	if len(codes) != 53 {
		t.Errorf("the table has %d entries; test each new one here", len(codes))
	}
	// The wire vocabulary passes as it is; anything else is internal, and
	// its text is not the caller's.
	if e := WireError(api.Errorf(api.CodeNoSuchEntity, "no user")); e.Code != api.CodeNoSuchEntity || e.Message != "no user" {
		t.Errorf("an api.Error became %+v", e)
	}
	if e := WireError(errors.New("open /var/lib/azote/state.db: EIO")); e.Code != api.CodeInternal || e.Message != "internal error" {
		t.Errorf("an unknown error became %+v", e)
	}
}
