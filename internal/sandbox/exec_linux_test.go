package sandbox

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestExec runs cat under Exec (the test binary run again as the shim) and
// reads what the kernel says of it.
func TestExec(t *testing.T) {
	if os.Getenv("AZOTE_SANDBOX_CHILD") == "1" {
		err := Exec(1879048192+4242, nil, []string{"/bin/cat", "/proc/self/status"}, nil)
		t.Fatalf("Exec returned: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: Exec drops from uid 0")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestExec$")
	cmd.Env = append(os.Environ(), "AZOTE_SANDBOX_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Uid:\t1879052434\t1879052434\t1879052434\t1879052434",
		"Gid:\t1879052434\t1879052434\t1879052434\t1879052434",
		"Groups:\t \n", "CapInh:\t0000000000000000", "CapPrm:\t0000000000000000",
		"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000",
		"NoNewPrivs:\t1",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
