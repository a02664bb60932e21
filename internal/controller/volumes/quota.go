package volumes

import (
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// The volume quota bounds the provisioned size of every volume that has a
// file (available, in use, or deleted and not yet purged), plus creations
// in progress. Volume files are sparse, so azoted's default, the size of
// the file system holding its state directory, means that volumes alone
// cannot be promised more than the disk holds.

// reserve holds size bytes of the volume quota until release is called,
// which Create does once the volume's record is stored (or its creation
// failed). A record and a reservation may both count one volume for a
// moment, never neither.
func (s *Service) reserve(size int64) (release func(), err error) {
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	var used int64
	err = s.db.View(func(tx store.Tx) error {
		all, err := allTx(tx)
		for _, v := range all {
			used += v.SizeBytes
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	used += s.reserved
	if quota := s.cfg.Quota; used+size > quota {
		return nil, refusal.New(refusal.ErrQuotaExceeded, "a volume of %d bytes would take this host's volumes past their quota: %d of %d bytes are provisioned (deleted volumes count until purged; azoted --volume-quota sets it)", size, used, quota)
	}
	s.reserved += size
	return func() {
		s.quotaMu.Lock()
		s.reserved -= size
		s.quotaMu.Unlock()
	}, nil
}
