package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
)

// register puts the route table on mux: the REST routes, the action
// route POST /v1/{service}/{action} (the Operations of Config), and a
// catch-all that refuses (and audits) anything else.
func (h *handler) register(mux *http.ServeMux) {
	for _, rt := range h.table() {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, rt) })
	}
	mux.HandleFunc("POST /v1/{service}/{action}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("service") + ":" + r.PathValue("action")
		op, ok := h.ops[strings.ToLower(name)]
		if !ok {
			h.deny(w, r, name, "", api.Errorf(api.CodeUnknownOperation, "unknown operation %s", name))
			return
		}
		h.serve(w, r, &route{op: op})
	})
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		if !isJSON11(r) {
			h.deny(w, r, "", "", api.Errorf(api.CodeNotFound, "POST / is the AWS JSON 1.1 endpoint: it needs X-Amz-Target"))
			return
		}
		h.serveJSON11(w, r)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.deny(w, r, "", "", api.Errorf(api.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

// serve takes one authenticated request through the pipeline, the same
// for every route:
//
//	decode (action operations) → resource → authorise → decode (REST)
//	→ authorise further resources → run → audit → answer
//
// An action operation names its resource in its body, so the body is
// decoded first; a REST route names it in the path and is authorised
// before its body is read. A refusal before the decision is audited by
// deny; everything after it, by the one record written below from the
// typed result. The answer is held back until that record is durable, so
// no call is answered unaudited; a stream's decision is recorded before
// its first byte instead.
func (h *handler) serve(w http.ResponseWriter, r *http.Request, rt *route) {
	ri := info(r)
	ctx := r.Context()
	op := rt.op
	if h.cfg.Network && ri.service != api.Service {
		h.deny(w, r, op.Name, "", api.Errorf(api.CodeIncompleteSignature, "azote's API is signed for the service %q, not %q", api.Service, ri.service))
		return
	}
	var req any
	var call *restCall
	if rt.rest {
		call = &restCall{r: r, w: w}
		req = call
	} else {
		var e *api.Error
		if req, e = decodeOp(w, r, op); e != nil {
			h.deny(w, r, op.Name, "", e)
			return
		}
		if op.NetworkDenied && h.cfg.Network {
			h.deny(w, r, op.Name, "", api.Errorf(api.CodeAccessDenied, "%s is only available to host root on the local socket", op.Name))
			return
		}
	}
	res, err := op.Resource(ctx, req)
	if err != nil {
		h.deny(w, r, op.Name, "", WireError(err))
		return
	}
	if op.Conditions != nil {
		ri.conds = op.Conditions(ctx, req)
	}
	if !h.authorize(w, r, op.Name, res) {
		return
	}
	var tee *capture
	if rt.rest {
		tee = &capture{r: r.Body}
		r.Body = tee
		err = h.decodeREST(w, r, rt, call)
	}
	if err == nil && op.Also != nil {
		err = h.authorizeAlso(ctx, r, op, req, res)
	}
	if err == nil && h.cfg.afterAuthorize != nil {
		h.cfg.afterAuthorize(r)
	}
	var out any
	if err == nil && rt.stream {
		// The decision is recorded before the first byte goes out.
		if aerr := h.record(ctx, h.callRecord(r, rt, req, res, tee, nil, nil)); aerr != nil {
			h.log.Error("audit append failed; refusing to answer", "action", op.Name, "err", aerr)
			writeError(w, auditUnavailable(aerr))
			return
		}
		if _, err = op.Do(ctx, ri.caller, req); err != nil {
			writeError(w, h.wireError(r, op, err))
		}
		return
	}
	if err == nil {
		out, err = op.Do(ctx, ri.caller, req)
	}
	if aerr := h.record(ctx, h.callRecord(r, rt, req, res, tee, out, err)); aerr != nil {
		h.log.Error("audit append failed; refusing to answer", "action", op.Name, "err", aerr)
		writeError(w, auditUnavailable(aerr))
		return
	}
	if err != nil {
		writeError(w, h.wireError(r, op, err))
		return
	}
	switch v := out.(type) {
	case rawResult:
		w.Header().Set("Content-Type", v.contentType)
		w.WriteHeader(http.StatusOK)
		w.Write(v.data)
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

// wireError is the answer for an error of a call: its code when it has
// one; InternalError when it has none, logged here with its text (which
// is not the caller's to read).
func (h *handler) wireError(r *http.Request, op *api.Operation, err error) *api.Error {
	e := WireError(err)
	if e.Code == api.CodeInternal {
		h.log.Error("request failed", "action", op.Name, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	return e
}

// decodeOp decodes an action operation's body.
func decodeOp(w http.ResponseWriter, r *http.Request, op *api.Operation) (any, *api.Error) {
	if op.NewRequest == nil {
		var none struct{}
		return nil, decode(w, r, &none)
	}
	req := op.NewRequest()
	return req, decode(w, r, req)
}

// decodeREST reads a REST route's body as the route says.
func (h *handler) decodeREST(w http.ResponseWriter, r *http.Request, rt *route, c *restCall) error {
	switch rt.body {
	case bodyEmpty:
		var none struct{}
		if e := decode(w, r, &none); e != nil {
			return e
		}
	case bodyJSON:
		c.body = rt.newBody()
		if e := decode(w, r, c.body); e != nil {
			return e
		}
	}
	return nil
}

// authorizeAlso authorises the call on the further resources it acts on,
// as AWS evaluates a call against every resource it involves; each joins
// the call's audit record. A denial is the call's answer.
func (h *handler) authorizeAlso(ctx context.Context, r *http.Request, op *api.Operation, req any, res string) error {
	ri := info(r)
	also, err := op.Also(ctx, req)
	if err != nil {
		return err
	}
	action := op.AlsoAction
	if action == "" {
		action = op.Name
	}
	for _, a := range also {
		ri.also = append(ri.also, a)
		act := action
		if op.AlsoActionOf != nil {
			if x := op.AlsoActionOf(a); x != "" {
				act = x
			}
		}
		if e := h.check(ri.caller, act, a, ri.alsoTags[a], ri.conds); e != nil {
			return e
		}
	}
	return nil
}

// callRecord is the audit record of an authorised call, from its typed
// request and result: what it was asked (the REST request as sent, or the
// action's decoded body), on which resources, and what it answered (the
// identifying fields of a change, or the error's code and message).
func (h *handler) callRecord(r *http.Request, rt *route, req any, res string, tee *capture, out any, err error) *audit.Record {
	ri := info(r)
	ar := h.baseRecord(r, ri, ri.caller, rt.op.Name, rt.op.ReadOnly)
	if res != "*" && res != "" {
		ar.Resources = append(ar.Resources, audit.Resource{ARN: res, AccountID: h.cfg.Auth.AccountID()})
	}
	for _, a := range ri.also {
		ar.Resources = append(ar.Resources, audit.Resource{ARN: a, AccountID: h.cfg.Auth.AccountID()})
	}
	if rt.params != nil {
		ar.RequestParameters = rt.params(req.(*restCall))
	} else if rt.rest {
		var body []byte
		if tee != nil {
			body = tee.data()
		}
		ar.RequestParameters = requestParams(r, body)
	} else {
		ar.RequestParameters = toMap(req)
	}
	switch {
	case err != nil:
		e := WireError(err)
		ar.ErrorCode, ar.ErrorMessage = string(e.Code), e.Message
	case rt.op.ReadOnly:
	case rt.rest:
		ar.ResponseElements = summarize(out)
	default:
		ar.ResponseElements = toMap(out)
	}
	return ar
}
