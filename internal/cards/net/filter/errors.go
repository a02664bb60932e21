package filter

import "errors"

// Sentinel errors; test for them with errors.Is.
var (
	// ErrInvalidRule means a Policy holds a rule that cannot be enforced:
	// both or neither of a prefix and a group, or ports outside their
	// ranges.
	ErrInvalidRule = errors.New("filter: invalid security group rule")
	// ErrInvalidConfig means New or a setter was given a value that cannot
	// be served, such as a negative timeout.
	ErrInvalidConfig = errors.New("filter: invalid configuration")
)
