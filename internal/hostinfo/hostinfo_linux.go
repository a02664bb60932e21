package hostinfo

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Info describes the host.
type Info struct {
	CPUModel     string `json:"cpu_model"`
	Cores        int    `json:"cores"`
	MemTotalMiB  int64  `json:"mem_total_mib"`
	MemAvailMiB  int64  `json:"mem_available_mib"`
	HardwareVirt bool   `json:"hardware_virtualization"`
	VirtReason   string `json:"hardware_virtualization_reason"`
	AESNI        bool   `json:"aes_ni"`
	AVX2         bool   `json:"avx2"`
	Kernel       string `json:"kernel"`
}

// Read gathers Info from the running host.
func Read() Info {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	meminfo, _ := os.ReadFile("/proc/meminfo")
	model, flags := parseCPUInfo(string(cpuinfo))
	total, avail := parseMemInfo(string(meminfo))
	var uts unix.Utsname
	unix.Uname(&uts)
	info := Info{
		CPUModel:    model,
		Cores:       runtime.NumCPU(),
		MemTotalMiB: total / 1024,
		MemAvailMiB: avail / 1024,
		AESNI:       flags["aes"],
		AVX2:        flags["avx2"],
		Kernel:      unix.ByteSliceToString(uts.Release[:]),
	}
	info.HardwareVirt, info.VirtReason = hardwareVirt(flags, kvmAPIVersion(), loadedKVMModules())
	return info
}

// MemAvailableMiB reads MemAvailable now.
func MemAvailableMiB() int64 {
	meminfo, _ := os.ReadFile("/proc/meminfo")
	_, avail := parseMemInfo(string(meminfo))
	return avail / 1024
}

// hardwareVirt decides whether KVM here can boot a stock kernel. /dev/kvm
// alone does not say so: a software implementation such as PVM also
// provides it. Real hardware virtualization shows as the vmx or svm CPU
// flag together with the matching vendor module.
func hardwareVirt(flags map[string]bool, apiVersion int, modules []string) (bool, string) {
	if apiVersion < 0 {
		return false, "no usable /dev/kvm"
	}
	if apiVersion != 12 {
		return false, fmt.Sprintf("/dev/kvm reports API version %d, want 12", apiVersion)
	}
	has := func(m string) bool {
		for _, x := range modules {
			if x == m {
				return true
			}
		}
		return false
	}
	if has("kvm_pvm") {
		return false, "/dev/kvm is PVM, a software implementation that cannot boot a stock kernel"
	}
	switch {
	case flags["vmx"] && has("kvm_intel"):
		return true, "CPU has VMX and kvm_intel is loaded"
	case flags["svm"] && has("kvm_amd"):
		return true, "CPU has SVM and kvm_amd is loaded"
	case !flags["vmx"] && !flags["svm"]:
		return false, "/dev/kvm exists but the CPU reports neither vmx nor svm"
	default:
		return false, fmt.Sprintf("CPU has virtualization extensions but no vendor KVM module is loaded (have %v)", modules)
	}
}

func kvmAPIVersion() int {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	defer unix.Close(fd)
	const kvmGetAPIVersion = 0xAE00 // _IO(KVMIO, 0x00)
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetAPIVersion, 0)
	if errno != 0 {
		return -1
	}
	return int(v)
}

func loadedKVMModules() []string {
	var mods []string
	for _, m := range []string{"kvm_intel", "kvm_amd", "kvm_pvm"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			mods = append(mods, m)
		}
	}
	return mods
}

func parseCPUInfo(s string) (model string, flags map[string]bool) {
	flags = map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		case "flags":
			if len(flags) == 0 {
				for _, f := range strings.Fields(v) {
					flags[f] = true
				}
			}
		}
	}
	return model, flags
}

func parseMemInfo(s string) (totalKiB, availKiB int64) {
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "MemTotal":
			totalKiB = n
		case "MemAvailable":
			availKiB = n
		}
	}
	return totalKiB, availKiB
}
