package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoVolumeCipher: azoted never handles volume plaintext, so it
// does not even link the volume cipher; cards (internal/cards/...) do the
// encrypting, azoted only hands them keys. (Before, azoted encrypted new
// root volumes itself from a plaintext file the rootfs helper left.)
func TestLinksNoVolumeCipher(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to list dependencies")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/azote/azote/cmd/azoted").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "github.com/azote/azote/internal/xts",
			strings.HasPrefix(p, "github.com/azote/azote/internal/cards/") && p != "github.com/azote/azote/internal/cards/cardproto":
			t.Errorf("azoted links %s", p)
		}
	}
}
