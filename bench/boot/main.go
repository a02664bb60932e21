// Command boot measures what azoted adds to booting a guest: in one run it
// boots the same kernel and initramfs N times through `azote instance run`
// (launch to the agent's ready line, as the CLI reports it) and N times
// with a plain qemu-system-x86_64 command line (process start to the same
// ready line on its serial console), alternating the two, and prints the
// medians and their ratio.
//
//	go run ./bench/boot -bin bin -n 5
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azote/azote/bench/internal/host"
	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
)

func main() {
	bin := flag.String("bin", "bin", "directory with azote, azoted and azote-agent")
	n := flag.Int("n", 5, "boots of each kind")
	vcpus := flag.Int("vcpus", 1, "vCPUs per guest")
	mem := flag.Int("memory", 256, "MiB per guest")
	flag.Parse()
	if err := run(*bin, *n, *vcpus, *mem); err != nil {
		fmt.Fprintln(os.Stderr, "bench/boot:", err)
		os.Exit(1)
	}
}

func run(bin string, n, vcpus, mem int) error {
	bin, _ = filepath.Abs(bin)
	az, err := host.Start(bin, "azote-bench-", "")
	if err != nil {
		return err
	}
	defer az.Stop()
	state, sock := az.State, az.Socket
	azote := func(args ...string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(bin, "azote"), args...)
		cmd.Env = append(os.Environ(), "AZOTE_SOCKET="+sock)
		cmd.Stderr = io.Discard
		return cmd.Output()
	}
	for i := 0; ; i++ {
		if _, err := azote("host", "info"); err == nil {
			break
		}
		if i > 100 {
			return fmt.Errorf("azoted did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "building the image ...")
	out, err := azote("image", "build", "--name", "bench", "--agent", filepath.Join(bin, "azote-agent"), "-o", "json")
	if err != nil {
		return fmt.Errorf("image build: %v", err)
	}
	var img api.Image
	if err := json.Unmarshal(out, &img); err != nil {
		return err
	}
	blob := func(d string) string { return filepath.Join(state, "images", "sha384", d) }
	hostInfo, _ := azote("host", "info", "-o", "json")
	var host api.HostInfo
	json.Unmarshal(hostInfo, &host)

	var viaAzoted, plain []time.Duration
	for i := 0; i < n; i++ {
		// azoted: the whole CLI command, which returns at agent-ready.
		start := time.Now()
		out, err := azote("instance", "run", "--name", fmt.Sprintf("bench-%d", i), "--image", "bench",
			"--vcpus", strconv.Itoa(vcpus), "--memory", strconv.Itoa(mem), "-o", "json")
		d := time.Since(start)
		if err != nil {
			return fmt.Errorf("instance run: %v", err)
		}
		var inst api.Instance
		json.Unmarshal(out, &inst)
		azote("instance", "terminate", inst.ID)
		viaAzoted = append(viaAzoted, d)
		time.Sleep(500 * time.Millisecond) // let the host settle between boots

		// Plain QEMU: same machine, kernel, initramfs and command line.
		d, err = plainBoot(host.Accel, blob(img.KernelSHA384), blob(img.InitrdSHA384), img.Cmdline+" azote.instance=plain", vcpus, mem)
		if err != nil {
			return err
		}
		plain = append(plain, d)
		time.Sleep(500 * time.Millisecond)
		fmt.Fprintf(os.Stderr, "boot %d: azoted %v, plain qemu %v\n", i+1, viaAzoted[i].Round(time.Millisecond), d.Round(time.Millisecond))
	}
	ma, mp := median(viaAzoted), median(plain)
	fmt.Printf("guest: %d vCPU, %d MiB, kernel %s, engine qemu accel %s, host %s (%d cores)\n", vcpus, mem, img.KernelVersion, host.Accel, host.CPUModel, host.Cores)
	fmt.Printf("%-34s %8s %8s %8s\n", "boot to agent ready (n="+strconv.Itoa(n)+")", "min", "median", "max")
	row := func(name string, ds []time.Duration) {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		fmt.Printf("%-34s %8d %8d %8d  ms\n", name, s[0].Milliseconds(), median(ds).Milliseconds(), s[len(s)-1].Milliseconds())
	}
	row("azote instance run (azoted)", viaAzoted)
	row("qemu-system-x86_64 (plain)", plain)
	over := ma - mp
	ratio := float64(ma) / float64(mp)
	fmt.Printf("ratio azoted/plain: %.3f   overhead: %+d ms\n", ratio, over.Milliseconds())
	verdict := "met"
	if ratio > 1.05 || over > 150*time.Millisecond {
		verdict = "NOT met"
	}
	fmt.Printf("goal (at most +5%% and at most +150 ms): %s\n", verdict)
	return nil
}

// plainBoot starts QEMU and times until the agent's ready line appears on
// its serial console.
func plainBoot(accel, kernel, initrd, cmdline string, vcpus, mem int) (time.Duration, error) {
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	m := strconv.Itoa(mem) + "M"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35,accel="+accel+",memory-backend=mem", "-cpu", cpu, "-smp", strconv.Itoa(vcpus), "-m", m,
		"-object", "memory-backend-memfd,id=mem,size="+m+",share=on",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline, "-serial", "stdio")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.Contains(sc.Text(), agent.Prefix+"event=ready") {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("plain qemu ended before the ready line")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
