// Command xts measures internal/xts against golang.org/x/crypto/xts and
// OpenSSL in one run: AES-256-XTS with 4 KiB sectors over a 64 MiB buffer
// (encrypted in place, one call per pass), best of 3 trials of about a
// second each per figure, then `openssl speed -evp aes-256-xts -bytes 4096
// -seconds 3` and the same with -decrypt (in-cache figures). It prints a
// table, the ratios of ours to OpenSSL's and whether the ≥ 0.9× goal is met.
//
// internal/xts picks its code from the CPU at start-up: VAES (16 blocks in
// flight) where the CPU and OS offer AVX-512 with VAES, else AES-NI (8 blocks
// in flight). When the default is VAES, the AES-NI code is measured too, by
// running this program again with GODEBUG=cpu.avx512f=off, which
// golang.org/x/sys/cpu honours.
//
//	go run ./bench/xts
package main

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/azote/azote/internal/xts"
	xxts "golang.org/x/crypto/xts"
	"golang.org/x/sys/cpu"
)

const (
	sectorSize = 4096
	goal       = 0.9
)

func main() {
	bufMiB := flag.Int("buf", 64, "buffer size in MiB")
	trial := flag.Duration("trial", time.Second, "minimum length of one trial")
	trials := flag.Int("trials", 3, "trials per figure (the best is kept)")
	osslSecs := flag.Int("openssl-seconds", 3, "seconds for openssl speed")
	child := flag.Bool("child", false, "only measure internal/xts and print the figures (used by the program itself)")
	flag.Parse()
	if *child {
		enc, dec, err := measureOurs(*bufMiB<<20, *trial, *trials)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/xts:", err)
			os.Exit(1)
		}
		fmt.Printf("RESULT %g %g\n", enc, dec)
		return
	}
	if err := run(*bufMiB<<20, *trial, *trials, *osslSecs); err != nil {
		fmt.Fprintln(os.Stderr, "bench/xts:", err)
		os.Exit(1)
	}
}

// measure runs pass (one pass over n bytes) repeatedly for at least d, trials
// times, and returns the best throughput in GB/s (10^9 bytes per second).
func measure(n int, d time.Duration, trials int, pass func(i uint64) error) (float64, error) {
	best := 0.0
	var iter uint64
	for range trials {
		start := time.Now()
		bytes := 0
		for {
			if err := pass(iter); err != nil {
				return 0, err
			}
			iter++
			bytes += n
			if el := time.Since(start); el >= d {
				if gbs := float64(bytes) / el.Seconds() / 1e9; gbs > best {
					best = gbs
				}
				break
			}
		}
	}
	return best, nil
}

// ourPath names the code internal/xts selects on this CPU (it mirrors the
// package's own check).
func ourPath() (string, bool) {
	switch {
	case !cpu.X86.HasAES:
		return "internal/xts (generic Go, no AES-NI)", false
	case cpu.X86.HasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VAES:
		return "internal/xts (asm VAES, 16 blocks)", true
	}
	return "internal/xts (asm AES-NI, 8 blocks)", false
}

// measureOurs measures internal/xts encryption and decryption in place.
func measureOurs(bufSize int, d time.Duration, trials int) (enc, dec float64, err error) {
	key := make([]byte, 64)
	if _, err := rand.Read(key); err != nil {
		return 0, 0, err
	}
	c, err := xts.New(key)
	if err != nil {
		return 0, 0, err
	}
	defer c.Wipe()
	buf := make([]byte, bufSize)
	if _, err := rand.Read(buf); err != nil {
		return 0, 0, err
	}
	sectors := uint64(bufSize / sectorSize)
	enc, err = measure(bufSize, d, trials, func(i uint64) error {
		return c.EncryptSectors(buf, buf, i*sectors, sectorSize)
	})
	if err != nil {
		return 0, 0, err
	}
	dec, err = measure(bufSize, d, trials, func(i uint64) error {
		return c.DecryptSectors(buf, buf, i*sectors, sectorSize)
	})
	return enc, dec, err
}

// measureAESNI runs this program again with AVX-512 hidden from
// golang.org/x/sys/cpu, so that internal/xts uses its AES-NI code.
func measureAESNI(bufMiB int, d time.Duration, trials int) (enc, dec float64, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(exe, "-child", "-buf", strconv.Itoa(bufMiB), "-trial", d.String(), "-trials", strconv.Itoa(trials))
	cmd.Env = append(os.Environ(), "GODEBUG=cpu.avx512f=off")
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("child run: %v", err)
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "RESULT %g %g", &enc, &dec); err != nil {
		return 0, 0, fmt.Errorf("child output %q: %v", out, err)
	}
	return enc, dec, nil
}

func run(bufSize int, d time.Duration, trials, osslSecs int) error {
	key := make([]byte, 64)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	c, err := xts.New(key)
	if err != nil {
		return err
	}
	defer c.Wipe()
	ref, err := xxts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return err
	}
	buf := make([]byte, bufSize)
	if _, err := rand.Read(buf); err != nil {
		return err
	}
	sectors := uint64(bufSize / sectorSize)

	// Sanity: ours agrees with x/crypto on the first sectors and round-trips.
	orig := append([]byte(nil), buf[:64*sectorSize]...)
	want := make([]byte, len(orig))
	for s := 0; s < 64; s++ {
		ref.Encrypt(want[s*sectorSize:(s+1)*sectorSize], orig[s*sectorSize:(s+1)*sectorSize], uint64(1000+s))
	}
	got := make([]byte, len(orig))
	if err := c.EncryptSectors(got, orig, 1000, sectorSize); err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("internal/xts disagrees with golang.org/x/crypto/xts")
	}
	if err := c.DecryptSectors(got, got, 1000, sectorSize); err != nil || !bytes.Equal(got, orig) {
		return fmt.Errorf("round trip failed (err %v)", err)
	}

	fmt.Printf("AES-256-XTS, %d-byte sectors, %d MiB buffer in place, best of %d × ≥%v\n",
		sectorSize, bufSize>>20, trials, d)
	fmt.Printf("%s %s/%s, %d CPUs, AES-NI %v, AVX2 %v, AVX-512F %v, VAES %v\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
		cpu.X86.HasAES, cpu.X86.HasAVX2, cpu.X86.HasAVX512F, cpu.X86.HasAVX512VAES)

	name, isVAES := ourPath()
	enc, dec, err := measureOurs(bufSize, d, trials)
	if err != nil {
		return err
	}
	var sseEnc, sseDec float64
	var sseErr error
	if isVAES {
		sseEnc, sseDec, sseErr = measureAESNI(bufSize>>20, d, trials)
	}
	xpass := func(decrypt bool) func(i uint64) error {
		return func(i uint64) error {
			for s := uint64(0); s < sectors; s++ {
				sec := buf[s*sectorSize : (s+1)*sectorSize]
				if decrypt {
					ref.Decrypt(sec, sec, i*sectors+s)
				} else {
					ref.Encrypt(sec, sec, i*sectors+s)
				}
			}
			return nil
		}
	}
	xenc, _ := measure(bufSize, d, trials, xpass(false))
	xdec, _ := measure(bufSize, d, trials, xpass(true))

	ossl, osslLine, osslErr := opensslSpeed(osslSecs, false)
	var osslDec float64
	var osslDecLine string
	if osslErr == nil {
		osslDec, osslDecLine, osslErr = opensslSpeed(osslSecs, true)
	}

	const row = "%-38s %7.2f GB/s %7.2f GB/s\n"
	fmt.Printf("%-38s %12s %12s\n", "implementation", "encrypt", "decrypt")
	fmt.Printf("%-38s %12s %12s\n", strings.Repeat("-", 38), "------------", "------------")
	fmt.Printf(row, name, enc, dec)
	if isVAES {
		if sseErr != nil {
			fmt.Printf("%-38s %s\n", "internal/xts (asm AES-NI, 8 blocks)", "not measured: "+sseErr.Error())
		} else {
			fmt.Printf(row, "internal/xts (asm AES-NI, 8 blocks)", sseEnc, sseDec)
		}
	}
	fmt.Printf(row, "golang.org/x/crypto/xts", xenc, xdec)
	if osslErr != nil {
		fmt.Printf("%-38s %s\n", "openssl speed", "unavailable: "+osslErr.Error())
		fmt.Printf("\nratio ours/x-crypto: encrypt %.1f×, decrypt %.1f×\n", enc/xenc, dec/xdec)
		fmt.Println("goal vs openssl: not judged (no openssl figure)")
		return nil
	}
	fmt.Printf(row, "openssl speed -evp aes-256-xts (4 KiB)", ossl, osslDec)
	fmt.Printf("  (%s; its lines: encrypt %q, -decrypt %q)\n", osslVersion(), osslLine, osslDecLine)
	fmt.Printf("\nratio ours/x-crypto: encrypt %.1f×, decrypt %.1f×\n", enc/xenc, dec/xdec)
	if isVAES && sseErr == nil {
		fmt.Printf("ratio AES-NI path/openssl: encrypt %.2f×, decrypt %.2f×\n", sseEnc/ossl, sseDec/osslDec)
	}
	verdict := "MET"
	if enc/ossl < goal || dec/osslDec < goal {
		verdict = "NOT MET"
	}
	fmt.Printf("ratio ours (default path)/openssl: encrypt %.2f×, decrypt %.2f× — goal ≥ %.1f×: %s\n",
		enc/ossl, dec/osslDec, goal, verdict)
	return nil
}

// osslVersion returns `openssl version`, or "?".
func osslVersion() string {
	out, err := exec.Command("openssl", "version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// opensslSpeed runs openssl speed (with -decrypt if decrypt) and returns its
// 4096-byte aes-256-xts figure in GB/s. OpenSSL prints "1000s of bytes per
// second" with a k suffix.
func opensslSpeed(secs int, decrypt bool) (float64, string, error) {
	path, err := exec.LookPath("openssl")
	if err != nil {
		return 0, "", errors.New("openssl not on PATH")
	}
	args := []string{"speed", "-evp", "aes-256-xts", "-bytes", "4096", "-seconds", strconv.Itoa(secs)}
	if decrypt {
		args = append(args, "-decrypt")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return 0, "", fmt.Errorf("openssl speed: %v: %s", err, bytes.TrimSpace(out))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) < 2 || !strings.EqualFold(f[0], "aes-256-xts") {
			continue
		}
		v := f[len(f)-1]
		scale := 1.0
		if strings.HasSuffix(v, "k") {
			v = strings.TrimSuffix(v, "k")
		} else {
			scale = 1e-3 // a bare figure would be bytes/s; OpenSSL always prints k
		}
		kbs, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, line, fmt.Errorf("cannot parse %q: %v", line, err)
		}
		return kbs * scale * 1e3 / 1e9, line, nil
	}
	return 0, "", fmt.Errorf("no aes-256-xts line in openssl output:\n%s", out)
}
