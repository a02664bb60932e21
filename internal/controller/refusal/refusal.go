package refusal

import (
	"errors"
	"fmt"
)

// Refusals every domain package may give.
var (
	// ErrInvalidParameter: a request field is malformed or out of range.
	ErrInvalidParameter = errors.New("invalid parameter")
	// ErrInvalidName: a name breaks api.NameRule.
	ErrInvalidName = errors.New("invalid name")
	// ErrNameInUse: another live object of the kind has the name.
	ErrNameInUse = errors.New("name in use")
	// ErrQuotaExceeded: the host's storage quota for the kind is full.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrUnavailable: a shared state store (the fleet's etcd) cannot be
	// reached now; the request may succeed once it is back.
	ErrUnavailable = errors.New("state store unavailable")
)

// Error is a refusal: Kind for errors.Is, Message for the caller.
type Error struct {
	Kind    error
	Message string
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Kind }

// New refuses with kind, saying format's sentence.
func New(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}
