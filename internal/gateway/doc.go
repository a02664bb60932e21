// Package gateway serves azoted's controller API: every request, on the
// root-only unix socket or the SigV4 HTTPS port, takes one path —
// authenticate → route to one Operation → authorise (a name resolved to
// its id once, the further resources of the call too) → run on the ids
// that were authorised → audit → answer (pipeline.go).
//
// It never trusts a request: bodies are size-bounded and decoded strictly
// (unknown fields are an error), connections and deadlines are bounded
// (limits.go), and the unix socket answers root only (SO_PEERCRED on every
// connection). It never answers a call whose audit record is not durable,
// and it alone turns errors into wire codes: an error without a code is
// logged and answered InternalError.
package gateway
