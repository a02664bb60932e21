// Package api is the vocabulary of azoted's controller API, shared by the
// server and its clients: the request and response types of every service
// (compute, IAM, STS, audit), the stable error codes, the Caller and
// Operation of a call, ARN building and parsing, and the name and tag
// rules.
//
// It never imports the rest of azote (only api/sigv4, for its client): a
// client links no gateway, no IAM evaluation and no state store, and a
// change to an internal struct cannot change the public JSON.
package api
