package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/durable"
)

// Config says where a trail lives and how it signs.
type Config struct {
	// Dir holds the trail (see the package comment for its layout).
	Dir string
	// AccountID and Region go into every record and file name.
	AccountID, Region string
	// Signer signs digests, SHA256withRSA (PKCS#1 v1.5); its public key
	// must be *rsa.PublicKey of 2048 bits or more.
	Signer crypto.Signer
	// MaxFileAge finishes the active log this long after its first record
	// (default 5 minutes).
	MaxFileAge time.Duration
	// MaxFileBytes finishes the active log once it holds this many bytes
	// of records (default 8 MiB).
	MaxFileBytes int64
	// DigestEvery writes a digest this often (default 1 hour, CloudTrail's
	// period); Close writes one too.
	DigestEvery time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HeadFile is where the signed journal head is kept (head.go); ""
	// means Dir/journal.head. Outside Dir (azoted keeps it in its state
	// directory), deleting it is not open to whoever can write Dir.
	HeadFile string
}

const (
	defaultMaxFileAge   = 5 * time.Minute
	defaultMaxFileBytes = 8 << 20
	defaultDigestEvery  = time.Hour

	queueLen      = 4096    // Appends waiting for the writer
	maxBatch      = 4096    // records per write+fsync
	maxBatchBytes = 4 << 20 // bytes per write+fsync
	maxTimerSleep = time.Minute
	retryDelay    = 5 * time.Second
	// recoverDelay spaces attempts to recover from a failed journal write:
	// at most one per recoverDelay, on an Append or in the background.
	recoverDelay = time.Second
)

// Trail is an open audit trail. Its methods are safe for concurrent use.
//
// Append pipeline, one stage per line:
//  1. caller goroutines, in parallel: fill in, redact and encode the record;
//     enqueue it; wait.
//  2. the writer goroutine, alone: take every queued record (a batch), one
//     write(2) and one fdatasync(2) to the journal, then answer each caller.
//     Rotation and digests also run here, between batches, so the journal
//     never changes under a batch.
type Trail struct {
	cfg         Config
	signer      crypto.Signer
	fingerprint string
	headKey     []byte
	pubPEM      []byte

	// sendMu orders Appends against Close: an Append holds it shared while
	// it checks closed and enqueues; Close holds it exclusively to set
	// closed, so once the writer sees the close request the queue can
	// only shrink.
	sendMu sync.RWMutex
	closed bool

	reqs    chan *appendReq
	ctl     chan ctlReq
	stopped chan struct{} // closed when the writer goroutine returns

	// filesMu guards which files a Lookup reads. The writer holds it
	// exclusively while it turns the journal into a log, so a Lookup,
	// holding it shared while it lists logs and reads the journal, sees
	// every record exactly once.
	filesMu     sync.RWMutex
	journalPath string // "" while no journal is open

	durable atomic.Int64 // journal bytes known to be on disk
	stats   counters

	// writeFault, when set (by tests), fails journal writes with its error:
	// a full disk or a dying device without needing either.
	writeFault atomic.Pointer[error]
	// failed mirrors w.failed for Err.
	failed atomic.Pointer[error]

	w writer // owned by the writer goroutine after Open returns
}

// writer is the state only the writer goroutine touches.
type writer struct {
	f              *os.File
	journalRel     string
	start          time.Time // of the open journal
	id             string
	size           int64
	oldest, newest time.Time
	buf            []byte
	batch          []*appendReq
	// failed is the error of a journal write that failed; while it is
	// set, every Append is refused with it. recoverAt is when the next
	// attempt to recover (finish the failed journal) may be made.
	failed    error
	recoverAt time.Time

	pending    []pendingLog
	prev       *prevDigest
	chainStart time.Time
	lastDigest time.Time
	retryAt    time.Time // after a failed periodic rotation or digest

	// body is the open journal as this process wrote it; rotation puts
	// it back over whatever else the file holds (rotate.go).
	body     []byte
	restored atomic.Uint64 // journals put back before rotation

	// head records, with every group commit, the open journal's
	// acknowledged length and the running hash of its bytes (head.go).
	head *headWriter
	hash hash.Hash
	sum  [sha256.Size]byte // of the acknowledged bytes
	next [sha256.Size]byte // scratch
}

// prevDigest is what the next digest needs of the last one.
type prevDigest struct {
	rel  string
	end  time.Time
	hash string
	sig  string
}

type appendReq struct {
	buf  bytes.Buffer
	enc  *json.Encoder
	when time.Time
	done chan error
}

var reqPool = sync.Pool{New: func() any {
	r := &appendReq{done: make(chan error, 1)}
	r.enc = json.NewEncoder(&r.buf)
	r.enc.SetEscapeHTML(false)
	return r
}}

type ctlOp int

const (
	opRotate ctlOp = iota
	opDigest
	opClose
)

type ctlReq struct {
	op    ctlOp
	reply chan error
}

// Open opens or creates the trail in cfg.Dir. It first finishes whatever a
// crash left: journals become logs (a torn last line is dropped and
// counted in Stats), temporary files are removed, and a digest whose
// signature file was not written is signed again (PKCS#1 v1.5 signatures
// are deterministic, so it is the same signature).
func Open(cfg Config) (*Trail, error) {
	if cfg.Dir == "" || !nameRE.MatchString(cfg.AccountID) || !nameRE.MatchString(cfg.Region) {
		return nil, fmt.Errorf("%w: need Dir, and AccountID and Region of [A-Za-z0-9-]", ErrConfig)
	}
	if cfg.Signer == nil {
		return nil, fmt.Errorf("%w: no Signer", ErrConfig)
	}
	pub, ok := cfg.Signer.Public().(*rsa.PublicKey)
	if !ok || pub.N.BitLen() < minRSABits {
		return nil, ErrBadKey
	}
	if cfg.MaxFileAge <= 0 {
		cfg.MaxFileAge = defaultMaxFileAge
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = defaultMaxFileBytes
	}
	if cfg.DigestEvery <= 0 {
		cfg.DigestEvery = defaultDigestEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HeadFile == "" {
		cfg.HeadFile = filepath.Join(cfg.Dir, headFileName)
	}
	pemBytes, err := publicKeyPEM(pub)
	if err != nil {
		return nil, err
	}
	t := &Trail{
		cfg:         cfg,
		signer:      cfg.Signer,
		fingerprint: fingerprint(pub),
		pubPEM:      pemBytes,
		reqs:        make(chan *appendReq, queueLen),
		ctl:         make(chan ctlReq),
		stopped:     make(chan struct{}),
	}
	if t.headKey, err = headKey(cfg.Signer); err != nil {
		return nil, err
	}
	if err := t.recover(); err != nil {
		t.w.head.close()
		return nil, err
	}
	go t.run()
	return t, nil
}

func (t *Trail) now() time.Time { return t.cfg.Now().UTC() }

// recover brings the directory to a clean state and loads the chain.
func (t *Trail) recover() error {
	root := t.cfg.Dir
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	for _, d := range []string{activeDir, logsDir, digestDir, keysDir} {
		if err := mkdirAllSync(root, d); err != nil {
			return err
		}
	}
	for _, d := range []string{logsDir, digestDir, keysDir} {
		if err := removeTemps(root, d); err != nil {
			return err
		}
	}
	keyRel := keysDir + "/" + t.fingerprint + ".pem"
	if err := writeFileAtomic(root, keyRel, t.pubPEM, true); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}

	head, headExists, headOK, err := readHead(t.cfg.HeadFile, t.headKey)
	if err != nil {
		return err
	}
	// The log of the journal the head names, if a crash left it finished
	// but perhaps not in a digest, must hold what the head vouches for.
	forged := map[string]bool{}
	if start, id, ok := parseJournalName(head.name); headOK && ok {
		rel := logName(t.cfg.AccountID, t.cfg.Region, start, id)
		match, err := logMatchesHead(root, rel, head)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		case !match:
			forged[rel] = true
			reason := "its log " + rel + " is not what the head records"
			if err := setAside(root, head.name, reason); err != nil {
				return err
			}
			t.stats.tampered.Add(1)
		}
	}
	verify := func(name string, b []byte) ([]byte, string) {
		_, acked, reason := checkJournal(head, headExists, headOK, name, b)
		return acked, reason
	}
	ents, err := os.ReadDir(filepath.Join(root, activeDir))
	if err != nil {
		return err
	}
	seen := false
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		seen = seen || e.Name() == head.name
		_, _, kept, dropped, err := recoverJournal(root, t.cfg.AccountID, t.cfg.Region, e.Name(), verify)
		var te *tamperedError
		if errors.As(err, &te) {
			t.stats.tampered.Add(1)
			continue
		}
		if err != nil {
			return fmt.Errorf("audit: recovering journal %s: %w", e.Name(), err)
		}
		t.stats.recovered.Add(uint64(kept))
		t.stats.dropped.Add(uint64(dropped))
	}
	if headOK && !seen && head.length > 0 && len(forged) == 0 {
		// The head names a journal with acknowledged records that is gone;
		// unless its log was finished, someone deleted it.
		if start, id, ok := parseJournalName(head.name); ok {
			rel := logName(t.cfg.AccountID, t.cfg.Region, start, id)
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); errors.Is(err, fs.ErrNotExist) {
				reason := fmt.Sprintf("deleted: %d acknowledged bytes are missing", head.length)
				if err := setAside(root, head.name, reason); err != nil {
					return err
				}
				t.stats.tampered.Add(1)
			}
		}
	}
	if t.w.head, err = openHeadWriter(t.cfg.HeadFile, t.headKey, head.seq); err != nil {
		return fmt.Errorf("audit: journal head: %w", err)
	}

	digests, err := listTree(root, digestDir, kindDigest)
	if err != nil {
		return err
	}
	sortByNameTime(digests)
	openedAt := t.now().Truncate(time.Second)
	listed := map[string]bool{}
	var cutoff time.Time
	if len(digests) > 0 {
		newest, nd, err := t.loadNewestDigest(digests[len(digests)-1])
		if err != nil {
			return err
		}
		t.w.prev = newest
		t.w.lastDigest = newest.end
		// Logs finished since the newest digest began with journals opened
		// after it ended (openJournal keeps it so), so only logs named from
		// its start on are candidates; collect what recent digests list so
		// none is listed twice.
		cutoff = nd.start.Truncate(time.Minute)
		for _, e := range nd.LogFiles {
			listed[e.S3Object] = true
		}
		for i := len(digests) - 2; i >= 0; i-- {
			d, err := readDigest(root, digests[i])
			if err != nil || d.end.Before(cutoff) {
				break // older damage is Validate's business, not Open's
			}
			for _, e := range d.LogFiles {
				listed[e.S3Object] = true
			}
		}
	} else {
		t.w.lastDigest = openedAt
		t.w.chainStart = openedAt
	}
	logs, err := listTree(root, logsDir, kindLog)
	if err != nil {
		return err
	}
	sortByNameTime(logs)
	for _, rel := range logs {
		nt, _ := nameTime(rel)
		if listed[rel] || nt.Before(cutoff) || forged[rel] {
			continue
		}
		p, err := readLogEntry(root, rel)
		if errors.Is(err, ErrCorrupt) {
			// Listing it would sign whatever someone wrote there. Left
			// unlisted, Validate reports it once a later digest exists.
			t.stats.corruptLogs.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		t.w.pending = append(t.w.pending, p)
		if t.w.prev == nil {
			t.w.chainStart = minTime(t.w.chainStart, nt)
		}
	}
	return nil
}

// loadNewestDigest reads the last digest of the chain and, if a crash came
// between writing it and its signature, signs it again.
func (t *Trail) loadNewestDigest(rel string) (*prevDigest, *digest, error) {
	root := t.cfg.Dir
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, nil, err
	}
	d, err := parseDigestFile(b)
	if err != nil {
		return nil, nil, fmt.Errorf("newest digest %s: %w", rel, err)
	}
	sig, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel+sigSuffix)))
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && d.DigestPublicKeyFingerprint == t.fingerprint:
		s, err := signDigest(t.signer, d.DigestEndTime, rel, b, d.PreviousDigestSignature)
		if err != nil {
			return nil, nil, err
		}
		if err := writeFileAtomic(root, rel+sigSuffix, []byte(s), false); err != nil {
			return nil, nil, err
		}
		sig = []byte(s)
	default:
		return nil, nil, fmt.Errorf("signature of newest digest %s: %w", rel, err)
	}
	return &prevDigest{rel: rel, end: d.end, hash: hashHex(b), sig: string(sig)}, d, nil
}

func readDigest(root, rel string) (*digest, error) {
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	return parseDigestFile(b)
}

// readLogEntry hashes a finished log and reads its event times.
func readLogEntry(root, rel string) (pendingLog, error) {
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return pendingLog{}, err
	}
	recs, err := parseLogFile(b)
	if err != nil {
		return pendingLog{}, fmt.Errorf("log %s: %w", rel, err)
	}
	p := pendingLog{rel: rel, hash: hashHex(b)}
	for i, r := range recs {
		if i == 0 {
			p.oldest, p.newest = r.EventTime, r.EventTime
		}
		p.oldest, p.newest = minTime(p.oldest, r.EventTime), maxTime(p.newest, r.EventTime)
	}
	return p, nil
}

func sortByNameTime(rels []string) {
	sort.SliceStable(rels, func(i, j int) bool {
		ti, _ := nameTime(rels[i])
		tj, _ := nameTime(rels[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return rels[i] < rels[j]
	})
}

// Append writes r to the trail and returns once it is on disk. It fills in
// EventID (a random UUID), EventVersion, RecipientAccountID, AWSRegion and
// EventTime when empty, and normalises the times. Values of secret-looking
// keys in the three free-form maps are written as Hidden (the caller's
// maps are not changed).
//
// Concurrent Appends share one write and one fdatasync. If ctx ends first
// Append returns its error and the record may or may not be written.
func (t *Trail) Append(ctx context.Context, r *Record) error {
	if r == nil || r.EventName == "" || r.EventSource == "" {
		return fmt.Errorf("%w: need EventSource and EventName", ErrInvalidRecord)
	}
	if r.EventID == "" {
		r.EventID = NewUUID()
	}
	if r.EventVersion == "" {
		r.EventVersion = EventVersion
	}
	if r.RecipientAccountID == "" {
		r.RecipientAccountID = t.cfg.AccountID
	}
	if r.AWSRegion == "" {
		r.AWSRegion = t.cfg.Region
	}
	if r.EventTime.IsZero() {
		r.EventTime = t.cfg.Now()
	}
	r.normalizeTimes()

	w := *r
	w.bound()
	if needsRedaction(w.RequestParameters) {
		w.RequestParameters = Redact(w.RequestParameters)
	}
	if needsRedaction(w.ResponseElements) {
		w.ResponseElements = Redact(w.ResponseElements)
	}
	if needsRedaction(w.AdditionalEventData) {
		w.AdditionalEventData = Redact(w.AdditionalEventData)
	}
	req := reqPool.Get().(*appendReq)
	req.buf.Reset()
	if err := req.enc.Encode((*plainRecord)(&w)); err != nil {
		reqPool.Put(req)
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	req.when = w.EventTime

	t.sendMu.RLock()
	if t.closed {
		t.sendMu.RUnlock()
		reqPool.Put(req)
		return ErrClosed
	}
	select {
	case t.reqs <- req:
		t.sendMu.RUnlock()
	case <-ctx.Done():
		t.sendMu.RUnlock()
		reqPool.Put(req)
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		reqPool.Put(req)
		return err
	case <-ctx.Done():
		// The writer still answers into done's buffer; req is left to
		// the garbage collector rather than reused under it.
		return ctx.Err()
	}
}

// Rotate finishes the active log now; the next digest lists it. (The
// writer's own rotations, by size and age, also sign that digest at once.)
func (t *Trail) Rotate() error { return t.control(opRotate) }

// WriteDigest finishes the active log, then writes and signs a digest of
// every log finished since the previous digest. A period with no logs
// still gets a digest, so coverage in time has no holes.
func (t *Trail) WriteDigest() error { return t.control(opDigest) }

// Close stops the writer after it has written everything already queued,
// finishes the log and writes a final digest.
func (t *Trail) Close() error {
	t.sendMu.Lock()
	already := t.closed
	t.closed = true
	t.sendMu.Unlock()
	if already {
		<-t.stopped
		return ErrClosed
	}
	reply := make(chan error, 1)
	t.ctl <- ctlReq{op: opClose, reply: reply}
	err := <-reply
	<-t.stopped
	return err
}

func (t *Trail) control(op ctlOp) error {
	reply := make(chan error, 1)
	select {
	case t.ctl <- ctlReq{op: op, reply: reply}:
		return <-reply
	case <-t.stopped:
		return ErrClosed
	}
}

// PublicKeyPEM returns the PKIX PEM of the key digests are signed with.
func (t *Trail) PublicKeyPEM() []byte { return bytes.Clone(t.pubPEM) }

// Fingerprint returns the digestPublicKeyFingerprint of the trail's key.
func (t *Trail) Fingerprint() string { return t.fingerprint }

// run is the writer goroutine. periodic runs after every event, not only
// when the timer fires, because under a steady stream of Appends the
// timer is reset before it can fire.
func (t *Trail) run() {
	defer close(t.stopped)
	timer := time.NewTimer(t.nextWake())
	defer timer.Stop()
	for {
		select {
		case req := <-t.reqs:
			t.commit(t.gather(req))
		case c := <-t.ctl:
			var err error
			switch c.op {
			case opRotate:
				err = t.rotateChecked()
			case opDigest:
				err = t.writeDigest()
			case opClose:
				c.reply <- t.shutdown()
				return
			}
			c.reply <- err
		case <-timer.C:
		}
		t.periodic()
		timer.Reset(t.nextWake())
	}
}

// gather collects first and whatever else is queued into one batch.
func (t *Trail) gather(first *appendReq) []*appendReq {
	w := &t.w
	w.batch = append(w.batch[:0], first)
	n := first.buf.Len()
	for len(w.batch) < maxBatch && n < maxBatchBytes {
		select {
		case r := <-t.reqs:
			w.batch = append(w.batch, r)
			n += r.buf.Len()
		default:
			return w.batch
		}
	}
	return w.batch
}

// commit writes a batch with one write and one fdatasync and answers it.
func (t *Trail) commit(batch []*appendReq) {
	err := t.writeBatch(batch)
	for i, r := range batch {
		r.done <- err
		batch[i] = nil
	}
	if err == nil && t.w.size >= t.cfg.MaxFileBytes {
		if t.rotateSigned() != nil {
			t.stats.rotateErrors.Add(1)
		}
	}
}

func (t *Trail) writeBatch(batch []*appendReq) error {
	w := &t.w
	if w.failed != nil {
		if err := t.recoverFailed(false); err != nil {
			return err
		}
	}
	if w.f == nil {
		if err := t.openJournal(); err != nil {
			return err
		}
	}
	w.buf = w.buf[:0]
	for _, r := range batch {
		w.buf = append(w.buf, r.buf.Bytes()...)
	}
	var err error
	if fault := t.writeFault.Load(); fault != nil {
		err = *fault
	} else {
		_, err = w.f.Write(w.buf)
	}
	began := time.Now()
	if err == nil {
		err = datasync(w.f)
	}
	if err == nil {
		// The head is on disk before any of the batch is acknowledged.
		w.hash.Write(w.buf)
		sum := [sha256.Size]byte(w.hash.Sum(w.next[:0]))
		if err = w.head.write(w.journalRel, w.size+int64(len(w.buf)), sum); err != nil {
			// It may have reached the disk: put back the head of what was
			// acknowledged, or a crash would find the journal shorter than
			// its head. (This journal takes no more batches.)
			_ = w.head.write(w.journalRel, w.size, w.sum)
		} else {
			w.sum = sum
		}
	}
	if err != nil {
		// Cut the journal back to what was acknowledged, so a recovery does
		// not resurrect records whose callers were told they failed.
		_ = w.f.Truncate(w.size)
		_ = datasync(w.f)
		t.setFailed(fmt.Errorf("%w: %v", ErrFailed, err))
		w.recoverAt = time.Now().Add(recoverDelay)
		t.stats.writeErrors.Add(1)
		return w.failed
	}
	t.stats.fsyncs.Add(1)
	t.stats.fsyncNanos.Add(uint64(time.Since(began)))
	w.size += int64(len(w.buf))
	w.body = append(w.body, w.buf...)
	t.durable.Store(w.size)
	for _, r := range batch {
		if w.oldest.IsZero() || r.when.Before(w.oldest) {
			w.oldest = r.when
		}
		if r.when.After(w.newest) {
			w.newest = r.when
		}
	}
	t.stats.records.Add(uint64(len(batch)))
	t.stats.batches.Add(1)
	t.stats.bytes.Add(uint64(len(w.buf)))
	if cap(w.buf) > 2*maxBatchBytes {
		w.buf = nil // one huge batch should not pin its buffer forever
	}
	return nil
}

// openJournal creates a journal and makes its directory entry durable
// before the first record is acknowledged in it.
func (t *Trail) openJournal() error {
	w := &t.w
	start := t.now()
	if w.prev != nil && start.Before(w.prev.end) {
		// A clock stepped back must not name a log before the digest
		// that precedes it.
		start = w.prev.end
	}
	id := randomID()
	name := journalName(start, id)
	full := filepath.Join(t.cfg.Dir, activeDir, name)
	// Not O_APPEND: bytes someone else appends are overwritten by the
	// next batch, and rotation can write the journal back in place. (No
	// batch follows a failed write in the same file, so the offset is
	// always w.size when one is written.)
	f, err := os.OpenFile(full, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := durable.SyncDir(filepath.Dir(full)); err != nil {
		f.Close()
		os.Remove(full)
		return err
	}
	t.filesMu.Lock()
	t.journalPath = full
	t.filesMu.Unlock()
	t.durable.Store(0)
	w.f, w.journalRel, w.start, w.id, w.size = f, name, start, id, 0
	w.oldest, w.newest = time.Time{}, time.Time{}
	if cap(w.body) > 2*int(t.cfg.MaxFileBytes) {
		w.body = nil // one huge journal should not pin its copy forever
	}
	w.body = w.body[:0]
	if w.hash == nil {
		w.hash = sha256.New()
	}
	w.hash.Reset()
	w.sum = sha256.Sum256(nil)
	return nil
}

// rotate turns the journal into a finished log. The log is compressed and
// synced before filesMu is taken, so a Lookup waits only for the link and
// the journal's removal.
func (t *Trail) rotate() error {
	w := &t.w
	if w.failed != nil {
		if err := t.recoverFailed(false); err != nil {
			return err
		}
	}
	return t.finishJournal()
}

// finishJournal is rotate without the check for a failed journal.
func (t *Trail) finishJournal() error {
	w := &t.w
	if w.f == nil {
		return nil
	}
	body := make([]byte, w.size)
	if _, err := w.f.ReadAt(body, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		// The journal holds only whole acknowledged lines; anything else
		// is not what was fsynced, and is not signed into a log.
		return fmt.Errorf("%w: journal %s does not end with a whole record", ErrCorrupt, w.journalRel)
	}
	rel := logName(t.cfg.AccountID, t.cfg.Region, w.start, w.id)
	gz, err := gzipBytes(logJSON(splitLines(body)))
	if err != nil {
		return err
	}
	tmp, err := writeTemp(t.cfg.Dir, rel, gz)
	if err != nil {
		return err
	}
	t.filesMu.Lock()
	err = commitTemp(tmp, t.cfg.Dir, rel)
	if err != nil {
		t.filesMu.Unlock()
		return err
	}
	// The log is durable: from here on the journal is only a duplicate,
	// and recovery removes it if removing it now fails.
	_ = w.f.Close()
	rmErr := os.Remove(t.journalPath)
	t.journalPath = ""
	t.durable.Store(0)
	t.filesMu.Unlock()

	w.pending = append(w.pending, pendingLog{rel: rel, hash: hashHex(gz), oldest: w.oldest, newest: w.newest})
	w.f = nil
	t.stats.logFiles.Add(1)
	if rmErr != nil {
		return rmErr
	}
	return durable.SyncDir(filepath.Join(t.cfg.Dir, activeDir))
}

// recoverFailed tries to leave the failed state that a failed journal
// write left: the journal is cut back to the records that were
// acknowledged, fsynced and finished into a log, so that the next batch
// starts a new journal in a new file. It is tried at most once per
// recoverDelay (unless force), by the next Append or by the writer's
// timer; until it succeeds every Append is refused with the latest cause.
func (t *Trail) recoverFailed(force bool) error {
	w := &t.w
	if !force && time.Now().Before(w.recoverAt) {
		return w.failed
	}
	w.recoverAt = time.Now().Add(recoverDelay)
	if err := t.finishFailed(); err != nil {
		t.stats.recoverErrors.Add(1)
		t.setFailed(fmt.Errorf("%w: %v", ErrFailed, err))
		return w.failed
	}
	t.setFailed(nil)
	t.stats.recoveries.Add(1)
	return nil
}

// setFailed sets the writer's failure and what Err reports.
func (t *Trail) setFailed(err error) {
	t.w.failed = err
	if err == nil {
		t.failed.Store(nil)
	} else {
		t.failed.Store(&err)
	}
}

// Err returns the error every Append is refused with while a failed
// journal write is not recovered from (it wraps ErrFailed), or nil. A
// caller checks it before acting so that it does not do what it then
// could not record.
func (t *Trail) Err() error {
	if p := t.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// finishFailed finishes the journal a write failed on. The bytes past
// w.size are the failed batch, whose callers were told it failed.
func (t *Trail) finishFailed() error {
	w := &t.w
	if fault := t.writeFault.Load(); fault != nil {
		return *fault
	}
	if w.f == nil {
		return nil
	}
	if err := w.f.Truncate(w.size); err != nil {
		return err
	}
	if err := datasync(w.f); err != nil {
		return err
	}
	if w.size > 0 {
		return t.finishJournal()
	}
	// Nothing was acknowledged in it: there is no log to make.
	t.filesMu.Lock()
	_ = w.f.Close()
	err := os.Remove(t.journalPath)
	t.journalPath = ""
	t.durable.Store(0)
	t.filesMu.Unlock()
	w.f = nil
	if err != nil {
		return err
	}
	return durable.SyncDir(filepath.Join(t.cfg.Dir, activeDir))
}

// writeDigest rotates and then writes, signs and links the next digest.
func (t *Trail) writeDigest() error {
	if err := t.rotateChecked(); err != nil {
		return err
	}
	w := &t.w
	now := t.now().Truncate(time.Second)
	start := w.chainStart
	if w.prev != nil {
		start = w.prev.end
	}
	end := maxTime(now, start)
	if w.prev != nil && !end.After(w.prev.end) {
		end = w.prev.end.Add(time.Second) // digest names are per second
	}
	d := digestFile{
		AWSAccountID:               t.cfg.AccountID,
		DigestStartTime:            fmtTime(start),
		DigestS3Bucket:             bucket,
		DigestPublicKeyFingerprint: t.fingerprint,
		DigestSignatureAlgorithm:   signatureAlgorithm,
		LogFiles:                   make([]logEntry, 0, len(w.pending)),
	}
	var oldest, newest time.Time
	for i, p := range w.pending {
		d.LogFiles = append(d.LogFiles, p.entry())
		if i == 0 {
			oldest, newest = p.oldest, p.newest
		}
		oldest, newest = minTime(oldest, p.oldest), maxTime(newest, p.newest)
	}
	if len(w.pending) > 0 {
		d.OldestEventTime, d.NewestEventTime = strp(fmtTime(oldest)), strp(fmtTime(newest))
	}
	if p := w.prev; p != nil {
		d.PreviousDigestS3Bucket = strp(bucket)
		d.PreviousDigestS3Object = strp(p.rel)
		d.PreviousDigestHashValue = strp(p.hash)
		d.PreviousDigestHashAlg = strp(hashAlgorithm)
		d.PreviousDigestSignature = strp(p.sig)
	}
	// A digest already at this second (a clock stepped back, or a file
	// someone placed) moves the end on rather than replacing it.
	for attempt := 0; ; attempt++ {
		rel := digestName(t.cfg.AccountID, t.cfg.Region, end)
		d.DigestEndTime = fmtTime(end)
		d.DigestS3Object = rel
		j, err := json.Marshal(d)
		if err != nil {
			return err
		}
		gz, err := gzipBytes(j)
		if err != nil {
			return err
		}
		sig, err := signDigest(t.signer, d.DigestEndTime, rel, gz, d.PreviousDigestSignature)
		if err != nil {
			return fmt.Errorf("audit: signing digest: %w", err)
		}
		err = writeFileAtomic(t.cfg.Dir, rel, gz, true)
		if errors.Is(err, fs.ErrExist) && attempt < 60 {
			end = end.Add(time.Second)
			continue
		}
		if err != nil {
			return err
		}
		if err := writeFileAtomic(t.cfg.Dir, rel+sigSuffix, []byte(sig), false); err != nil {
			// An unsigned digest would stay out of the chain forever; the
			// retry writes a new one.
			full := filepath.Join(t.cfg.Dir, filepath.FromSlash(rel))
			if os.Remove(full) == nil {
				_ = durable.SyncDir(filepath.Dir(full))
			}
			return err
		}
		w.prev = &prevDigest{rel: rel, end: end, hash: hashHex(gz), sig: sig}
		w.pending = nil
		w.lastDigest = now
		t.stats.digests.Add(1)
		return nil
	}
}

// shutdown answers everything queued, then finishes the log and writes
// the last digest. No Append can enqueue any more (Close set closed
// under sendMu before asking), so one pass empties the queue.
func (t *Trail) shutdown() error {
	for drained := false; !drained; {
		select {
		case r := <-t.reqs:
			t.commit(t.gather(r))
		default:
			drained = true
		}
	}
	var err error
	if t.w.failed != nil {
		err = t.recoverFailed(true)
	}
	if err == nil {
		err = t.writeDigest()
	}
	if t.w.f != nil {
		if cerr := t.w.f.Close(); err == nil {
			err = cerr
		}
		t.w.f = nil
	}
	if cerr := t.w.head.close(); err == nil {
		err = cerr
	}
	return err
}

// periodic finishes an old log and writes a digest when one is due. A
// failure (a full disk, say) is counted and retried after retryDelay, not
// in a tight loop.
func (t *Trail) periodic() {
	now := t.now()
	w := &t.w
	if w.failed != nil && t.recoverFailed(false) != nil {
		return
	}
	if now.Before(w.retryAt) {
		return
	}
	var err error
	switch {
	case !now.Before(w.lastDigest.Add(t.cfg.DigestEvery)):
		if err = t.writeDigest(); err != nil {
			t.stats.digestErrors.Add(1)
		}
	case w.f != nil && !now.Before(w.start.Add(t.cfg.MaxFileAge)):
		if err = t.rotateSigned(); err != nil {
			t.stats.rotateErrors.Add(1)
		}
	}
	if err != nil {
		w.retryAt = now.Add(retryDelay)
	}
}

// nextWake is how long the writer may sleep before periodic has work.
func (t *Trail) nextWake() time.Duration {
	w := &t.w
	now := t.now()
	d := w.lastDigest.Add(t.cfg.DigestEvery).Sub(now)
	if w.f != nil {
		d = min(d, w.start.Add(t.cfg.MaxFileAge).Sub(now))
	}
	d = max(d, w.retryAt.Sub(now))
	if w.failed != nil {
		d = time.Until(w.recoverAt)
	}
	return max(min(d, maxTimerSleep), time.Millisecond)
}

// NewUUID returns a random (version 4) UUID, the form of eventID and
// requestID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
