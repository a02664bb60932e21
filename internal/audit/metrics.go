package audit

import (
	"sync/atomic"
	"time"
)

// Stats are the trail's counters since Open, for the caller to export (as
// Prometheus text, say). Every field only grows.
type Stats struct {
	Records       uint64        // records appended and fsynced
	Batches       uint64        // write+fdatasync rounds (group commits)
	Bytes         uint64        // journal bytes written
	Fsyncs        uint64        // successful fdatasync calls on the journal
	FsyncTime     time.Duration // total time spent in them
	LogFiles      uint64        // logs finished by this process
	Digests       uint64        // digests written by this process
	Recovered     uint64        // records Open found in journals left by a crash
	Dropped       uint64        // journal lines Open could not parse (torn tails)
	CorruptLogs   uint64        // unlisted logs Open could not read, left unlisted
	Tampered      uint64        // journals Open set aside: not what their signed head says
	WriteErrors   uint64        // failed journal writes (each fails the trail until it recovers)
	Recoveries    uint64        // times the trail recovered from a failed write
	RecoverErrors uint64        // attempts to recover that failed and will be retried
	RotateErrors  uint64        // automatic rotations that failed and will be retried
	DigestErrors  uint64        // periodic digests that failed and will be retried
}

type counters struct {
	records, batches, bytes, fsyncs, fsyncNanos atomic.Uint64
	logFiles, digests, recovered, dropped       atomic.Uint64
	corruptLogs, tampered                       atomic.Uint64
	writeErrors, rotateErrors, digestErrors     atomic.Uint64
	recoveries, recoverErrors                   atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (t *Trail) Stats() Stats {
	c := &t.stats
	return Stats{
		Records:       c.records.Load(),
		Batches:       c.batches.Load(),
		Bytes:         c.bytes.Load(),
		Fsyncs:        c.fsyncs.Load(),
		FsyncTime:     time.Duration(c.fsyncNanos.Load()),
		LogFiles:      c.logFiles.Load(),
		Digests:       c.digests.Load(),
		Recovered:     c.recovered.Load(),
		Dropped:       c.dropped.Load(),
		CorruptLogs:   c.corruptLogs.Load(),
		Tampered:      c.tampered.Load(),
		WriteErrors:   c.writeErrors.Load(),
		RotateErrors:  c.rotateErrors.Load(),
		DigestErrors:  c.digestErrors.Load(),
		Recoveries:    c.recoveries.Load(),
		RecoverErrors: c.recoverErrors.Load(),
	}
}
