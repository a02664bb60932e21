package instances

import (
	"testing"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/testutil"
)

// TestWireConversions checks that the API view azoted makes of the
// agent's report carries every field, under the same JSON name: a field
// added to the agent and not converted fails here.
func TestWireConversions(t *testing.T) {
	var r agent.Report
	testutil.FillFields(&r)
	testutil.SameJSONFields(t, "agent.Report", r, agentReport(r))
}
