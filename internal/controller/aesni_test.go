package controller

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/xts"
)

// TestEncryptedVolumeNeedsAESNI re-runs itself with AES-NI switched off
// (GODEBUG=cpu.aes=off, which the CPU feature check obeys): azoted then
// refuses to create an encrypted volume, with an error that says why and
// what to do, and still creates a plaintext one.
func TestEncryptedVolumeNeedsAESNI(t *testing.T) {
	if os.Getenv("AZOTE_TEST_NO_AESNI") == "" {
		if xts.Available() != nil {
			t.Skip("this CPU has no AES-NI: nothing to switch off")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestEncryptedVolumeNeedsAESNI$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "GODEBUG=cpu.aes=off", "AZOTE_TEST_NO_AESNI=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestEncryptedVolumeNeedsAESNI") {
			t.Fatalf("with AES-NI off: %v\n%s", err, out)
		}
		return
	}
	if err := xts.Available(); !errors.Is(err, xts.ErrNoAESNI) {
		t.Fatalf("GODEBUG=cpu.aes=off did not switch AES-NI off: %v", err)
	}
	fx := newFixture(t)
	ctx := context.Background()
	for _, kind := range []string{api.VolumePersistent, api.VolumeInstanceStore} {
		_, err := fx.c.CreateVolume(ctx, api.CreateVolumeRequest{Name: "enc-" + kind, SizeBytes: 1 << 20, Kind: kind})
		e := gateway.WireError(err)
		if err == nil || e.Code != api.CodeInvalidParameter || !strings.Contains(e.Message, "AES-NI") || !strings.Contains(e.Message, "--plaintext") {
			t.Fatalf("encrypted %s volume without AES-NI: %v", kind, err)
		}
	}
	if list, err := fx.c.ListVolumes(ctx); err != nil || len(list) != 0 {
		t.Fatalf("refused creates left volumes: %v %v", list, err)
	}
	if v, err := fx.c.CreateVolume(ctx, api.CreateVolumeRequest{Name: "plain", SizeBytes: 1 << 20, Kind: api.VolumePersistent, Plaintext: true}); err != nil || v.Encrypted {
		t.Fatalf("plaintext volume without AES-NI: %+v %v", v, err)
	}
}
