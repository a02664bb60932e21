package instances

import (
	"syscall"
	"testing"
)

type blocks struct{ size, allocated int64 }

func statBlocks(t *testing.T, path string) blocks {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return blocks{size: st.Size, allocated: st.Blocks * 512}
}
