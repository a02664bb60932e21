package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/kms"
	"github.com/azote/azote/internal/kms/blob"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/testutil"
)

var blkImageOnce sync.Once

// blkImage builds the image whose agent runs testdata/blk.sh.
func blkImage(t *testing.T, h *harness) {
	t.Helper()
	testutil.RequiresCommand(t, "mke2fs", "e2fsprogs")
	var err string
	blkImageOnce.Do(func() {
		mke2fs, _ := exec.LookPath("mke2fs")
		r := h.azote("image", "build", "--name", "blk", "--agent", filepath.Join(h.bin, "azote-agent"),
			"--binary", mke2fs, "--script", "testdata/blk.sh")
		if r.code != 0 {
			err = r.stderr
		}
	})
	if err != "" {
		t.Fatalf("building the blk image: %s", err)
	}
}

// waitConsole waits until the console holds n lines matching re.
func (h *harness) waitConsole(t *testing.T, id string, re *regexp.Regexp, n int) []string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := h.ok(t, "instance", "console", id, "--tail", "1000000")
		if m := re.FindAllString(out, -1); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("console of %s never showed %d × %v:\n%s", id, n, re, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// volumeKey reads a persistent volume's data key the way only a holder of
// the root key can: azoted is stopped, the volume's KMS ciphertext and its
// KMS key's wrapped material are read from the store, the material is
// unwrapped with the root key (host.key) and the data key decrypted with
// it. Tests use it to check the on-disk format with openssl.
func (h *harness) volumeKey(t *testing.T, volID string) []byte {
	t.Helper()
	h.mu.Lock()
	cmd, waited := h.azoted, h.waited
	h.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	<-waited
	defer func() {
		if err := h.startAzoted(); err != nil {
			t.Fatal(err)
		}
	}()
	st, err := store.OpenBolt(filepath.Join(h.state, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	var vol struct {
		DataKey  []byte `json:"data_key"`
		KMSKeyID string `json:"kms_key_id"`
	}
	var kmsKey struct {
		Versions []struct {
			Wrapped []byte `json:"wrapped"`
		} `json:"versions"`
	}
	err = st.View(func(tx store.Tx) error {
		if err := tx.Get("volumes", volID, &vol); err != nil {
			return err
		}
		_, id, _ := strings.Cut(vol.KMSKeyID, ":key/")
		return tx.Get(kms.KeysTable, id, &kmsKey)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := os.ReadFile(filepath.Join(h.state, "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := keys.NewHost(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := blob.ParseHeader(vol.DataKey)
	if err != nil || int(hdr.Version) >= len(kmsKey.Versions) {
		t.Fatalf("the volume's data key blob: %v", err)
	}
	material, err := root.Unwrap(keys.KMS, kmsKey.Versions[hdr.Version].Wrapped, []byte(fmt.Sprintf("kms key %s version %d", hdr.KeyID, hdr.Version)))
	if err != nil {
		t.Fatalf("unwrapping the KMS key's material: %v", err)
	}
	key, err := blob.Open(material, vol.DataKey, map[string]string{"azote:volume": volID})
	if err != nil {
		t.Fatalf("decrypting the volume's data key: %v", err)
	}
	return key
}

// TestEncryptedVolume: a real guest makes an ext4 filesystem on an
// encrypted persistent volume served by a blk card, writes files, is
// stopped and started, and finds them intact; the backing file holds no
// plaintext, and a chosen sector decrypts with openssl as aes-xts-plain64.
// A read-only volume refuses writes.
func TestEncryptedVolume(t *testing.T) {
	h := setup(t)
	blkImage(t, h)
	var data, ro api.Volume
	h.okJSON(t, &data, "volume", "create", "--size", "64M", "--kind", "persistent", "--name", "e2e-data")
	h.okJSON(t, &ro, "volume", "create", "--size", "16M", "--kind", "persistent", "--name", "e2e-ro")
	t.Cleanup(func() {
		h.azote("volume", "delete", data.ID, "--now")
		h.azote("volume", "delete", ro.ID, "--now")
	})
	if !data.Encrypted || data.Cipher != "aes-xts-plain64" || data.State != api.VolumeAvailable {
		t.Fatalf("new volume: %+v", data)
	}
	inst := h.run(t, "blk", 2, 256, "--image", "blk", "--volume", data.ID, "--volume", ro.ID+":ro")
	if len(inst.Volumes) != 2 || inst.Volumes[0].CardPID == 0 || !inst.Volumes[1].ReadOnly {
		t.Fatalf("attached volumes: %+v", inst.Volumes)
	}
	// The cards have dropped root, each to a uid of its own, and
	// confined themselves.
	if a, b := ownUID(t, "card", inst.Volumes[0].CardPID), ownUID(t, "card", inst.Volumes[1].CardPID); a == b {
		t.Errorf("both cards run as uid %d", a)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", inst.Volumes[0].CardPID))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("card process status lacks %q", want)
		}
	}
	lines := h.waitConsole(t, inst.ID, regexp.MustCompile(`blk-test: [^\r\n]*`), 5)
	joined := strings.Join(lines, "\n")
	for _, want := range []string{"blk-test: created filesystem", "blk-test: ro-write=refused", "blk-test: ro-read=4096", "blk-test: done"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("guest output lacks %q:\n%s", want, joined)
		}
	}
	sha := regexp.MustCompile(`sha=([0-9a-f]{64})`).FindStringSubmatch(joined)
	if sha == nil {
		t.Fatalf("no checksum in guest output:\n%s", joined)
	}
	var v api.Volume
	h.okJSON(t, &v, "volume", "describe", data.ID)
	if v.State != api.VolumeInUse || v.AttachedTo != inst.ID {
		t.Fatalf("volume while attached: %+v", v)
	}
	h.fails(t, api.CodeVolumeInUse, "volume", "delete", data.ID)

	metrics := h.ok(t, "host", "metrics")
	if !regexp.MustCompile(`azote_volume_ops_total\{volume="` + data.ID + `",op="write"\} [1-9]`).MatchString(metrics) {
		t.Errorf("metrics lack writes to %s:\n%s", data.ID, metrics)
	}

	// Stop and start: the filesystem and the file are intact.
	h.ok(t, "instance", "stop", inst.ID)
	h.okJSON(t, &inst, "instance", "start", inst.ID)
	lines = h.waitConsole(t, inst.ID, regexp.MustCompile(`blk-test: [^\r\n]*`), 10)
	joined = strings.Join(lines[5:], "\n")
	if !strings.Contains(joined, "blk-test: mounted existing filesystem") || !strings.Contains(joined, "sha="+sha[1]) {
		t.Fatalf("after stop/start the data changed:\n%s", joined)
	}
	h.ok(t, "instance", "stop", inst.ID)

	// Detach and attach again while stopped; refused while running.
	v = api.Volume{} // decode into a fresh value: omitted fields stay empty
	h.okJSON(t, &v, "volume", "detach", ro.ID)
	if v.State != api.VolumeAvailable || v.AttachedTo != "" {
		t.Fatalf("detached volume: %+v", v)
	}
	v = api.Volume{}
	h.okJSON(t, &v, "volume", "attach", ro.ID, "--instance", inst.ID, "--read-only")
	if v.State != api.VolumeInUse || v.AttachedTo != inst.ID || !v.ReadOnly {
		t.Fatalf("re-attached volume: %+v", v)
	}
	if got := h.describe(t, inst.ID); len(got.Volumes) != 2 || got.Volumes[1].VolumeID != ro.ID || !got.Volumes[1].ReadOnly {
		t.Fatalf("instance volumes after re-attach: %+v", got.Volumes)
	}

	// On disk: no plaintext, and sector 130000 is aes-xts-plain64.
	backing, err := os.ReadFile(filepath.Join(h.state, "volumes", data.ID+".img"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(backing, []byte("AZOTE-PLAINTEXT-PATTERN")) || bytes.Contains(backing, []byte("AZOTE-SECTOR-MARKER")) {
		t.Fatal("the backing file holds plaintext")
	}
	// OpenSSL 3's `openssl enc` refuses XTS ("enc XTS ciphers not
	// supported"), so the sector goes through OpenSSL's libcrypto by way of
	// Debian's python3-cryptography binding.
	if exec.Command("/usr/bin/python3", "-c", "import cryptography").Run() != nil {
		t.Skip("needs /usr/bin/python3 with python3-cryptography (OpenSSL's libcrypto) to decrypt a sector")
	}
	key := h.volumeKey(t, data.ID)
	const sector = 130000
	iv := make([]byte, 16)
	binary.LittleEndian.PutUint64(iv, sector)
	dec := exec.Command("/usr/bin/python3", "-c", `import sys
from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
d = Cipher(algorithms.AES(bytes.fromhex(sys.argv[1])), modes.XTS(bytes.fromhex(sys.argv[2])), backend=backend).decryptor()
sys.stdout.buffer.write(d.update(sys.stdin.buffer.read()) + d.finalize())
print(backend.openssl_version_text(), file=sys.stderr)`, hex.EncodeToString(key), hex.EncodeToString(iv))
	dec.Stdin = bytes.NewReader(backing[sector*512 : sector*512+512])
	var stderr bytes.Buffer
	dec.Stderr = &stderr
	plain, err := dec.Output()
	if err != nil {
		t.Fatalf("decrypting with OpenSSL: %v: %s", err, stderr.String())
	}
	t.Logf("sector %d decrypted by %s", sector, strings.TrimSpace(stderr.String()))
	if !bytes.HasPrefix(plain, []byte("AZOTE-SECTOR-MARKER-0000")) {
		t.Fatalf("sector %d decrypted with openssl: %q", sector, plain[:64])
	}
}

// TestInstanceStoreVolume: an instance-store volume's key lives only while
// the instance does; terminate destroys key and file.
func TestInstanceStoreVolume(t *testing.T) {
	h := setup(t)
	blkImage(t, h)
	var eph, ro api.Volume
	// The instance-store volume bypasses the host page cache: the guest's
	// whole test and the card restart below run over O_DIRECT.
	h.okJSON(t, &eph, "volume", "create", "--size", "64M", "--kind", "instance-store", "--direct-io")
	h.okJSON(t, &ro, "volume", "create", "--size", "16M", "--kind", "persistent")
	t.Cleanup(func() { h.azote("volume", "delete", ro.ID, "--now") })
	if !eph.DirectIO || ro.DirectIO {
		t.Fatalf("direct_io: instance-store %v, persistent %v", eph.DirectIO, ro.DirectIO)
	}
	inst := h.run(t, "eph", 1, 256, "--image", "blk", "--volume", eph.ID, "--volume", ro.ID+":ro")
	h.waitConsole(t, inst.ID, regexp.MustCompile(`blk-test: done`), 1)

	// Kill the card under the running guest: azoted restarts it and the
	// guest's disk keeps working (checked by a reboot that reads it back).
	card := inst.Volumes[0].CardPID
	syscall.Kill(card, syscall.SIGKILL)
	got := h.waitFor(t, inst.ID, "a new card", func(i api.Instance) bool {
		return len(i.Volumes) > 0 && i.Volumes[0].CardPID != 0 && i.Volumes[0].CardPID != card
	})
	if !pidAlive(got.Volumes[0].CardPID) {
		t.Fatal("restarted card is not running")
	}
	h.ok(t, "instance", "reboot", inst.ID)
	lines := h.waitConsole(t, inst.ID, regexp.MustCompile(`blk-test: [^\r\n]*`), 10)
	if !strings.Contains(strings.Join(lines[5:], "\n"), "blk-test: mounted existing filesystem") {
		t.Fatalf("after the card restart the guest lost its filesystem:\n%s", strings.Join(lines, "\n"))
	}

	// After an azoted restart (kill -9) the new azoted gets the
	// instance-store key back from the live card (it was only ever in the
	// old azoted and the card), so a card that dies now is restarted with
	// the right key and the guest keeps its data.
	h.killAzoted(t)
	if err := h.startAzoted(); err != nil {
		t.Fatal(err)
	}
	got = h.describe(t, inst.ID)
	card = got.Volumes[0].CardPID
	if got.State != api.StateRunning || !pidAlive(card) {
		t.Fatalf("after azoted restart: %s, card %d alive %v", got.State, card, pidAlive(card))
	}
	syscall.Kill(card, syscall.SIGKILL)
	got = h.waitFor(t, inst.ID, "a new card after the azoted restart", func(i api.Instance) bool {
		return len(i.Volumes) > 0 && i.Volumes[0].CardPID != 0 && i.Volumes[0].CardPID != card
	})
	if !pidAlive(got.Volumes[0].CardPID) {
		t.Fatal("the card restarted after the azoted restart is not running")
	}
	h.ok(t, "instance", "reboot", inst.ID)
	lines = h.waitConsole(t, inst.ID, regexp.MustCompile(`blk-test: [^\r\n]*`), 15)
	if !strings.Contains(strings.Join(lines[10:], "\n"), "blk-test: mounted existing filesystem") {
		t.Fatalf("after an azoted restart and a card restart the guest lost its filesystem:\n%s", strings.Join(lines, "\n"))
	}
	var shas []string
	for _, l := range lines {
		if strings.HasPrefix(l, "blk-test: sha=") {
			shas = append(shas, l)
		}
	}
	if len(shas) != 3 || shas[0] != shas[1] || shas[1] != shas[2] {
		t.Fatalf("the file written at the first boot changed across card and azoted restarts: %v", shas)
	}
	if strings.Contains(h.azotedLog(), "could not recover the instance-store key") {
		t.Error("azoted could not recover the key from the live card")
	}

	h.ok(t, "instance", "terminate", inst.ID)
	h.fails(t, api.CodeVolumeNotFound, "volume", "describe", eph.ID)
	if _, err := os.Stat(filepath.Join(h.state, "volumes", eph.ID+".img")); !os.IsNotExist(err) {
		t.Fatalf("instance-store file survived terminate: %v", err)
	}
	var v api.Volume
	h.okJSON(t, &v, "volume", "describe", ro.ID)
	if v.State != api.VolumeAvailable {
		t.Fatalf("persistent volume after terminate: %s", v.State)
	}
}

var (
	blkLoadImageOnce sync.Once
	blkLoadImageErr  string
)

// TestCardKilledUnderLoad kills an instance-store volume's card (two
// queues) while four writers in a real guest stream random data with
// O_DIRECT, each MiB of the disk written once: once on an O_DIRECT backing
// file (32 requests in flight per queue, completed out of order), once on
// the page cache (the card moves data through the mapped file).
// The volume is throttled to 32 MiB/s, so the writers' requests wait in
// the card and some are in flight at the kill. QEMU reconnects to the card
// azoted restarts and hands it the inflight area; the new card serves
// again what was in flight, the writers carry on, and every MiB reads back
// with the checksum of what was written there (a lost write would leave
// the noise an unwritten encrypted sector decrypts to).
func TestCardKilledUnderLoad(t *testing.T) {
	h := setup(t)
	blkLoadImageOnce.Do(func() {
		r := h.azote("image", "build", "--name", "blkload", "--agent", filepath.Join(h.bin, "azote-agent"),
			"--script", "testdata/blkload.sh")
		if r.code != 0 {
			blkLoadImageErr = r.stderr
		}
	})
	if blkLoadImageErr != "" {
		t.Fatalf("building the load image: %s", blkLoadImageErr)
	}
	t.Run("direct", func(t *testing.T) { cardKilledUnderLoad(t, h, true) })
	t.Run("pagecache", func(t *testing.T) { cardKilledUnderLoad(t, h, false) })
}

func cardKilledUnderLoad(t *testing.T, h *harness, direct bool) {
	args := []string{"volume", "create", "--size", "160M", "--kind", "instance-store", "--throughput", "32"}
	if direct {
		args = append(args, "--direct-io")
	}
	var vol api.Volume
	h.okJSON(t, &vol, args...)
	inst := h.run(t, "load", 2, 384, "--image", "blkload", "--volume", vol.ID)
	cardLog := filepath.Join(h.state, "instances", inst.ID, vol.ID+".card.log")
	t.Cleanup(func() { // before the instance's terminate removes the log
		if t.Failed() {
			if i := h.describe(t, inst.ID); len(i.Volumes) > 0 && i.Volumes[0].CardPID > 0 {
				// The Go runtime dumps the goroutines and exits.
				pid := i.Volumes[0].CardPID
				syscall.Kill(pid, syscall.SIGQUIT)
				for end := time.Now().Add(10 * time.Second); pidAlive(pid) && time.Now().Before(end); {
					time.Sleep(20 * time.Millisecond)
				}
			}
			b, _ := os.ReadFile(cardLog)
			t.Logf("card log:\n%s", b)
		}
	})
	h.waitConsole(t, inst.ID, regexp.MustCompile(`blk-load: writer \d pass`), 2)
	if len(inst.Volumes) == 0 || inst.Volumes[0].CardPID <= 0 {
		t.Fatalf("no card for the volume: %+v", inst.Volumes)
	}
	// A kill is the test only if requests were in flight at that moment
	// (the restarted card says it resubmits them). The writers can all be
	// between two requests at the instant of the kill; then the new card
	// is killed too, up to three times, while the writers still run.
	card := inst.Volumes[0].CardPID
	for kill := 1; ; kill++ {
		if err := syscall.Kill(card, syscall.SIGKILL); err != nil {
			t.Fatalf("kill card %d: %v", card, err)
		}
		if out := h.ok(t, "instance", "console", inst.ID, "--tail", "1000000"); strings.Contains(out, "blk-load: writers done") {
			t.Fatal("the writers finished before the card was killed with requests in flight; the test did not load the card")
		}
		old := card
		i := h.waitFor(t, inst.ID, "a new card", func(i api.Instance) bool {
			return len(i.Volumes) > 0 && i.Volumes[0].CardPID != 0 && i.Volumes[0].CardPID != old
		})
		card = i.Volumes[0].CardPID
		// The new card logs what it resubmits as QEMU hands it the rings
		// back, just after the inflight area, and before it serves any
		// request: once the guest's writers progress again (a line they
		// print after the card took the area), the log says whether
		// anything was resubmitted.
		newCard := func() string {
			l := readFile(cardLog)
			return l[strings.LastIndex(l, "msg=serving"):]
		}
		waitUntil(t, time.Minute, "the new card to take the inflight area", func() bool {
			return strings.Count(readFile(cardLog), "msg=serving") > kill && strings.Contains(newCard(), "inflight tracking area in use")
		}, func() string { return readFile(cardLog) })
		progress := regexp.MustCompile(`blk-load: (writer \d pass|writers done)`)
		seen := len(progress.FindAllString(h.ok(t, "instance", "console", inst.ID, "--tail", "1000000"), -1))
		waitUntil(t, 2*time.Minute, "the writers to progress on the new card", func() bool {
			if strings.Contains(newCard(), "resubmitting") {
				return true
			}
			return len(progress.FindAllString(h.ok(t, "instance", "console", inst.ID, "--tail", "1000000"), -1)) > seen
		}, func() string { return readFile(cardLog) })
		if strings.Contains(newCard(), "resubmitting") {
			break
		}
		if kill == 3 {
			t.Fatalf("three kills found no request in flight\n%s", readFile(cardLog))
		}
		t.Logf("kill %d: no request was in flight; killing the new card", kill)
	}
	lines := h.waitConsole(t, inst.ID, regexp.MustCompile(`blk-load: verified [^\r\n]*`), 1)
	out := h.ok(t, "instance", "console", inst.ID, "--tail", "1000000")
	if lines[0] != "blk-load: verified 144 chunks, bad=0" || regexp.MustCompile(`blk-load: writer \d failed`).MatchString(out) {
		t.Fatalf("after the card was killed under load: %s\n%s", lines[0], out)
	}
	// Both cards took the inflight area from QEMU: the first made it, the
	// second was handed it back.
	log, rerr := os.ReadFile(cardLog)
	if rerr != nil {
		t.Fatal(rerr)
	}
	wantIO := "io=page-cache"
	if direct {
		wantIO = "io=direct"
	}
	if strings.Count(string(log), wantIO) < 2 {
		t.Fatalf("the cards did not both serve with %s:\n%s", wantIO, log)
	}
	if n := strings.Count(string(log), "inflight tracking area in use"); n < 2 {
		t.Fatalf("the cards took the inflight area %d times, want at least 2:\n%s", n, log)
	}
	resubmitted := false
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "resubmitting") {
			t.Log(l)
			resubmitted = true
		}
	}
	if !resubmitted {
		t.Fatalf("the restarted card resubmitted nothing: no request was in flight at the kill\n%s", log)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestVolumeDeleteRestore: deletion protection, recoverable delete,
// restore, and delete --now.
func TestVolumeDeleteRestore(t *testing.T) {
	h := setup(t)
	var v api.Volume
	h.okJSON(t, &v, "volume", "create", "--size", "8M", "--deletion-protection")
	h.fails(t, api.CodeDeletionProtected, "volume", "delete", v.ID)
	h.ok(t, "volume", "modify", v.ID, "--deletion-protection=false")
	h.okJSON(t, &v, "volume", "delete", v.ID)
	if v.State != api.VolumeDeleted || v.PurgeAt == nil {
		t.Fatalf("deleted volume: %+v", v)
	}
	h.okJSON(t, &v, "volume", "restore", v.ID)
	if v.State != api.VolumeAvailable {
		t.Fatalf("restored volume: %+v", v)
	}
	h.ok(t, "volume", "delete", v.ID, "--now")
	h.fails(t, api.CodeVolumeNotFound, "volume", "describe", v.ID)
	if _, err := os.Stat(filepath.Join(h.state, "volumes", v.ID+".img")); !os.IsNotExist(err) {
		t.Fatalf("file survived delete --now: %v", err)
	}
	for _, bad := range [][]string{
		{"--size", "1000"},
		{"--size", "100T"},
		{"--size", "8M", "--kind", "floppy"},
	} {
		r := h.azote(append([]string{"volume", "create"}, bad...)...)
		if r.code != 1 {
			t.Errorf("volume create %v: exit %d (%s)", bad, r.code, r.stderr)
		}
	}
	h.fails(t, api.CodeVolumeNotFound, "instance", "run", "--volume", "vol-nope", "--no-wait")
}
