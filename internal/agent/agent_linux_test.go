package agent

import "testing"

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-3": 4, "0-1,4,6-7": 5, "": 0, "x": 0, "3-1": 0} {
		if got := countCPUList(in); got != want {
			t.Errorf("countCPUList(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestSystemRAM(t *testing.T) {
	iomem := `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000f0000-000fffff : Reserved
00100000-1ffdffff : System RAM
  01000000-01e00000 : Kernel code
100000000-13fffffff : System RAM
`
	want := int64(0x9fbff-0x1000+1)/1024 + int64(0x1ffdffff-0x100000+1)/1024 + int64(0x40000000)/1024
	if got := systemRAMKiB(iomem); got != want {
		t.Fatalf("systemRAMKiB = %d, want %d", got, want)
	}
}
