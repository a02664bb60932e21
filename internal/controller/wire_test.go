package controller

import (
	"testing"

	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/testutil"
)

// TestWireConversions checks that the API view azoted makes of hostinfo
// carries every field, under the same JSON name: a field added inside
// azoted and not converted fails here.
func TestWireConversions(t *testing.T) {
	var h hostinfo.Info
	testutil.FillFields(&h)
	testutil.SameJSONFields(t, "hostinfo.Info", h, hostInfo(h, "qemu", "kvm"))
}
