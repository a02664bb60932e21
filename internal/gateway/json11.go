package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
)

// JSONService is an AWS service spoken in AWS JSON 1.1 (the KMS): it
// decodes, authorises and runs one operation for an authenticated caller
// (a key's policy and grants decide, which only it can read) and says
// what the call's audit record holds. The gateway authenticates, routes
// by X-Amz-Target, audits and answers, as for every other call.
type JSONService interface {
	Call(ctx context.Context, c *api.Caller, operation string, body []byte) (*api.JSONResult, error)
}

// isJSON11 tells whether r is an AWS JSON 1.1 call, whose errors take
// that protocol's form even when it fails before routing.
func isJSON11(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/" && r.Header.Get("X-Amz-Target") != ""
}

// answerError writes e in the protocol of r.
func answerError(w http.ResponseWriter, r *http.Request, e *api.Error) {
	if isJSON11(r) {
		writeJSON11Error(w, e)
		return
	}
	writeError(w, e)
}

// json11Codes names azote's own refusals as AWS names them in JSON 1.1
// answers, so that an SDK raises its typed error.
var json11Codes = map[api.Code]api.Code{
	api.CodeMissingAuthentication: api.CodeAWSMissingAuth,
	api.CodeIncompleteSignature:   api.CodeAWSIncompleteSignature,
	api.CodeInvalidClientTokenID:  api.CodeAWSUnrecognizedClient,
	api.CodeSignatureDoesNotMatch: api.CodeAWSInvalidSignature,
	api.CodeRequestExpired:        api.CodeAWSInvalidSignature,
	api.CodeRequestReplayed:       api.CodeAWSInvalidSignature,
	api.CodeExpiredToken:          api.CodeAWSExpiredToken,
	api.CodeThrottling:            api.CodeAWSThrottling,
	api.CodeAccessDenied:          api.CodeKMSAccessDenied,
	api.CodeMalformedRequest:      api.CodeKMSSerialization,
	api.CodeRequestTooLarge:       api.CodeKMSValidation,
	api.CodeInternal:              api.CodeKMSInternal,
	api.CodeUnknownOperation:      api.CodeKMSUnknownOperation,
	api.CodeNotFound:              api.CodeKMSUnknownOperation,
}

// writeJSON11Error answers as AWS JSON 1.1 services do: the exception's
// name in __type and X-Amzn-ErrorType, 400 for the caller's errors, 5xx
// for the service's.
func writeJSON11Error(w http.ResponseWriter, e *api.Error) {
	code := e.Code
	if c, ok := json11Codes[code]; ok {
		code = c
	}
	status := http.StatusBadRequest
	switch code {
	case api.CodeKMSInternal:
		status = http.StatusInternalServerError
	case api.CodeAuditUnavailable, api.CodeStateStoreUnavailable:
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", api.JSON11ContentType)
	w.Header().Set("X-Amzn-ErrorType", string(code))
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": string(code), "message": e.Message})
}

// serveJSON11 takes one authenticated AWS JSON 1.1 call through the
// pipeline: route by X-Amz-Target → the service authorises and runs it →
// audit → answer. A network caller must have signed it for that
// service: a signature for azote's own API does not reach the KMS.
func (h *handler) serveJSON11(w http.ResponseWriter, r *http.Request) {
	ri := info(r)
	target := r.Header.Get("X-Amz-Target")
	name, isKMS := strings.CutPrefix(target, api.KMSTargetPrefix)
	if !isKMS || h.cfg.KMS == nil {
		h.deny(w, r, "", "", api.Errorf(api.CodeUnknownOperation, "unknown X-Amz-Target %q", audit.Truncate(target, 128)))
		return
	}
	action := api.KMSService + ":" + name
	if h.cfg.Network && ri.service != api.KMSService {
		h.deny(w, r, action, "", api.Errorf(api.CodeIncompleteSignature, "a KMS call is signed for the service %q, not %q", api.KMSService, ri.service))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, api.JSON11ContentType) {
		h.deny(w, r, action, "", api.Errorf(api.CodeMalformedRequest, "Content-Type %q: want %s", ct, api.JSON11ContentType))
		return
	}
	body := ri.body
	if !h.cfg.Network {
		b, err := io.ReadAll(io.LimitReader(r.Body, api.MaxBodyBytes+1))
		if err != nil || len(b) > api.MaxBodyBytes {
			h.deny(w, r, action, "", api.Errorf(api.CodeRequestTooLarge, "request body exceeds %d bytes", api.MaxBodyBytes))
			return
		}
		body = b
	}
	res, err := h.cfg.KMS.Call(r.Context(), ri.caller, name, body)
	if res == nil {
		res = &api.JSONResult{}
	}
	rec := h.baseRecord(r, ri, ri.caller, action, res.ReadOnly)
	rec.EventSource = api.KMSEventSource
	for _, a := range res.Resources {
		rec.Resources = append(rec.Resources, audit.Resource{ARN: a, Type: "AWS::KMS::Key", AccountID: h.cfg.Auth.AccountID()})
	}
	rec.RequestParameters = res.Request
	if err != nil {
		e := api.AsError(err)
		rec.ErrorCode, rec.ErrorMessage = string(e.Code), e.Message
	} else {
		rec.ResponseElements = res.Response
	}
	if aerr := h.record(r.Context(), rec); aerr != nil {
		h.log.Error("audit append failed; refusing to answer", "action", action, "err", aerr)
		writeJSON11Error(w, auditUnavailable(aerr))
		return
	}
	if err != nil {
		writeJSON11Error(w, api.AsError(err))
		return
	}
	w.Header().Set("Content-Type", api.JSON11ContentType)
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(res.Out)
}
