// Package api is azoted's controller API: the request and response types,
// the stable error codes, the HTTP routing with its input limits and
// caller checks, and the client the CLI uses.
//
// The server side never trusts a request: bodies are size-bounded, decoded
// strictly (unknown fields are an error), and every handler works through
// the Backend interface, which the controller implements. The unix socket
// answers root only (checked by SO_PEERCRED on every connection).
package api
