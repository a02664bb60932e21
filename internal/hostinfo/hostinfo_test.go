package hostinfo

import "testing"

func TestHardwareVirt(t *testing.T) {
	f := func(s ...string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		flags   map[string]bool
		api     int
		modules []string
		want    bool
	}{
		{"no kvm", f("vmx"), -1, nil, false},
		{"pvm on amd without svm", f("aes", "hypervisor"), 12, []string{"kvm_pvm"}, false},
		{"pvm even with vmx", f("vmx"), 12, []string{"kvm_pvm", "kvm_intel"}, false},
		{"intel", f("vmx"), 12, []string{"kvm_intel"}, true},
		{"amd", f("svm"), 12, []string{"kvm_amd"}, true},
		{"flag without module", f("svm"), 12, nil, false},
		{"odd api", f("vmx"), 11, []string{"kvm_intel"}, false},
	} {
		got, reason := hardwareVirt(tc.flags, tc.api, tc.modules)
		if got != tc.want || reason == "" {
			t.Errorf("%s: got %v (%q), want %v", tc.name, got, reason, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	model, flags := parseCPUInfo("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu aes avx2\n\nprocessor\t: 1\nmodel name\t: other\nflags\t: fpu\n")
	if model != "AMD EPYC" || !flags["aes"] || !flags["avx2"] || len(flags) != 3 {
		t.Fatalf("cpuinfo: %q %v", model, flags)
	}
	total, avail := parseMemInfo("MemTotal:       24000000 kB\nMemFree: 1 kB\nMemAvailable:   23000000 kB\n")
	if total != 24000000 || avail != 23000000 {
		t.Fatalf("meminfo: %d %d", total, avail)
	}
	if i := Read(); i.Cores < 1 || i.MemTotalMiB < 1 || i.VirtReason == "" {
		t.Fatalf("Read on this host: %+v", i)
	}
}
