package e2e

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/testutil"
)

// TestVolumeImport (no guest): a qcow2 image made by qemu-img from a raw
// disk is imported by the CLI; the volume file holds none of the disk's
// plaintext, and decrypted sector by sector by OpenSSL (aes-xts-plain64,
// through python3-cryptography) it is the raw disk followed by zeros. A
// truncated image is refused and leaves no volume.
func TestVolumeImport(t *testing.T) {
	h := setup(t)
	testutil.RequiresCommand(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	disk := bytes.Repeat([]byte("AZOTE-IMPORT-PATTERN-0123456789\n"), (5<<20+512)/32)
	raw, qc := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(raw, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", raw, qc).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	var v api.Volume
	h.okJSON(t, &v, "volume", "import", "--file", qc, "--name", "imported", "--size", "8M")
	defer h.azote("volume", "delete", v.ID, "--now")
	if v.State != api.VolumeAvailable || !v.Encrypted || v.SizeBytes != 8<<20 {
		t.Fatalf("imported volume: %+v", v)
	}
	// Refused before the body is read: the client hears the refusal,
	// not a broken pipe.
	h.fails(t, api.CodeNameInUse, "volume", "import", "--file", qc, "--name", "imported")
	backing, err := os.ReadFile(filepath.Join(h.state, "volumes", v.ID+".img"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(backing, []byte("AZOTE-IMPORT-PATTERN")) {
		t.Fatal("the volume file holds plaintext")
	}
	if exec.Command("/usr/bin/python3", "-c", "import cryptography").Run() != nil {
		t.Skip("needs /usr/bin/python3 with python3-cryptography (OpenSSL's libcrypto) to decrypt the volume")
	}
	key := h.volumeKey(t, v.ID)
	dec := exec.Command("/usr/bin/python3", "-c", `import sys
from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
key, data, out = bytes.fromhex(sys.argv[1]), sys.stdin.buffer.read(), []
for s in range(len(data) // 512):
    d = Cipher(algorithms.AES(key), modes.XTS(s.to_bytes(16, "little")), backend=backend).decryptor()
    out.append(d.update(data[s*512:(s+1)*512]) + d.finalize())
sys.stdout.buffer.write(b"".join(out))`, hex.EncodeToString(key))
	dec.Stdin = bytes.NewReader(backing)
	var stderr bytes.Buffer
	dec.Stderr = &stderr
	plain, err := dec.Output()
	if err != nil {
		t.Fatalf("decrypting with OpenSSL: %v: %s", err, stderr.String())
	}
	if !bytes.Equal(plain, append(disk, make([]byte, len(backing)-len(disk))...)) {
		t.Fatal("the volume does not decrypt to the imported disk followed by zeros")
	}

	// A truncated image is refused by the client; nothing is made.
	full, _ := os.ReadFile(qc)
	os.WriteFile(qc, full[:len(full)/2], 0o600)
	if r := h.azote("volume", "import", "--file", qc, "--name", "truncated"); r.code == 0 {
		t.Fatalf("a truncated image was imported: %s", r.stdout)
	}
	h.fails(t, api.CodeVolumeNotFound, "volume", "describe", "truncated")
}
