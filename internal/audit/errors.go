package audit

import "errors"

// Sentinel errors; test for them with errors.Is.
var (
	// ErrClosed means the trail was closed; nothing more is appended.
	ErrClosed = errors.New("audit: trail closed")
	// ErrFailed means a write or fsync of the journal failed (a full disk,
	// an I/O error). After a failed fsync the kernel may have dropped the
	// dirty pages, so the trail does not write to that journal again: it
	// refuses every Append until it has cut the journal back to the
	// records it acknowledged and finished it into a log, which it tries
	// at most once a second, on an Append or on its own.
	ErrFailed = errors.New("audit: journal write failed; appends are refused until the trail can write again")
	// ErrConfig means Open was given a configuration it cannot run with.
	ErrConfig = errors.New("audit: invalid configuration")
	// ErrBadKey means a signing or public key is not RSA of at least 2048
	// bits, or cannot be parsed.
	ErrBadKey = errors.New("audit: key must be RSA, 2048 bits or more")
	// ErrInvalidRecord means Append was given a record it will not write.
	ErrInvalidRecord = errors.New("audit: invalid record")
	// ErrCorrupt means a journal line, log file or digest file does not
	// parse as the trail writes it.
	ErrCorrupt = errors.New("audit: corrupt file")
	// ErrNoDigest means a directory holds no digest in the period asked
	// for, so nothing in it can be validated.
	ErrNoDigest = errors.New("audit: no digest in the period")
	// ErrBadPath means a path is not one the trail layout allows.
	ErrBadPath = errors.New("audit: path outside the trail layout")
	// ErrHistoryRewritten means a source served different bytes for a path
	// already collected. The collected copy is kept.
	ErrHistoryRewritten = errors.New("audit: source rewrote collected history")
	// ErrSourceDeleted means a source no longer lists a path already
	// collected.
	ErrSourceDeleted = errors.New("audit: source deleted collected history")
	// ErrDigestRefused means a collector refused a new digest: it is
	// signed by a key it does not trust, or does not chain to the last
	// digest it holds.
	ErrDigestRefused = errors.New("audit: digest refused")
	// ErrNoTrustedKey means a collector has no pinned key to check
	// digests with.
	ErrNoTrustedKey = errors.New("audit: no trusted public key")
)
