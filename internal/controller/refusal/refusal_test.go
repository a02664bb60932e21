package refusal

import (
	"errors"
	"fmt"
	"testing"
)

func TestRefusal(t *testing.T) {
	errFull := errors.New("full")
	err := fmt.Errorf("creating: %w", New(errFull, "volume %s is full", "vol-1"))
	if !errors.Is(err, errFull) || errors.Is(err, ErrNameInUse) {
		t.Fatalf("errors.Is does not see the kind through wrapping: %v", err)
	}
	var r *Error
	if !errors.As(err, &r) || r.Message != "volume vol-1 is full" {
		t.Fatalf("the caller's sentence is lost: %#v", r)
	}
}
