package controller

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// Storage quotas. Blobs (image kernels and initramfs) and volumes are what
// API callers make azoted store; each kind has a quota of bytes on the
// host, checked before anything is created, so a refused call leaves
// nothing behind.
//
//   - Blobs: the bytes of stored blobs and of uploads in progress
//     (--blob-quota). An upload is cut off at the first byte over it.
//   - Volumes: the provisioned size of every volume that has a file
//     (available, in use, or deleted and not yet purged), plus creations in
//     progress (--volume-quota). Volume files are sparse, so the default,
//     the size of the file system holding the state directory, means that
//     volumes alone cannot be promised more than the disk holds.

// defaultBlobQuota is the default --blob-quota.
const defaultBlobQuota = 16 << 30

// byteSize is a flag of bytes written as 512M, 4G, 1T or a byte count.
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil || *b.n == 0 {
		return "0"
	}
	n := *b.n
	for _, u := range []string{"", "K", "M", "G", "T"} {
		if n%1024 != 0 || u == "T" {
			return strconv.FormatInt(n, 10) + u
		}
		n /= 1024
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteSize) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if strings.HasSuffix(s, u.suffix) {
			mult, s = u.mult, strings.TrimSuffix(s, u.suffix)
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a byte count with an optional K, M, G or T suffix")
	}
	*b.n = n * mult
	return nil
}

// fileSystemBytes is the size of the file system holding dir.
func fileSystemBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * st.Bsize, nil
}

// reserveVolume holds size bytes of the volume quota until release is
// called, which the caller does once the volume's record is stored (or
// its creation failed). A record and a reservation may both count one
// volume for a moment, never neither.
func (c *Controller) reserveVolume(size int64) (release func(), err error) {
	c.quotaMu.Lock()
	defer c.quotaMu.Unlock()
	var used int64
	err = c.store.View(func(tx store.Tx) error {
		all, err := c.allVolumes(tx)
		for _, v := range all {
			used += v.SizeBytes
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	used += c.volumesReserved
	if quota := c.cfg.VolumeQuota; used+size > quota {
		return nil, api.Errorf(api.CodeQuotaExceeded, "a volume of %d bytes would take this host's volumes past their quota: %d of %d bytes are provisioned (deleted volumes count until purged; azoted --volume-quota sets it)", size, used, quota)
	}
	c.volumesReserved += size
	return func() {
		c.quotaMu.Lock()
		c.volumesReserved -= size
		c.quotaMu.Unlock()
	}, nil
}
