package gateway

import (
	"context"
	"fmt"
	"github.com/azote/azote/internal/api"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/azote/azote/internal/audit"
)

// Requests refused before authentication are audited, but an
// unauthenticated client must not be able to fill the disk with their
// records. In each refusalWindow the first refusalsPerSource refusals from
// one source, and at most refusalsPerWindow in all, get a record each;
// the rest are counted, and when the window ends each source with refusals
// left out gets one summary record saying how many, with which codes
// (refusalSummaries sources at most; the others share one record). The
// client's answer is the same either way.
const (
	refusalWindow     = time.Minute
	refusalsPerSource = 10
	refusalsPerWindow = 100
	// refusalSources bounds the sources tracked in a window; refusals
	// from sources beyond it are counted under otherSources.
	refusalSources   = 4096
	refusalSummaries = 16
	otherSources     = "other"

	// Bounds on what a refusal record keeps of the request.
	maxRefusedPath   = 256
	maxRefusedMethod = 16
	maxRefusedAgent  = 256
	maxRefusedKeyID  = 128 // AWS access key ids are at most 128 characters
	maxRefusedMsg    = 512
)

// refusals counts refusals per source in the current window.
type refusals struct {
	mu      sync.Mutex
	start   time.Time // of the current window
	written int       // records written one by one in this window
	sources map[string]*refusalCount
	// armed tells that a timer will write the window's summaries when it
	// ends, if nothing else (a later refusal) did first. One is armed only
	// while refusals are left out, so no timer outlives the need for it.
	armed bool
}

type refusalCount struct {
	written, omitted int
	codes            map[api.Code]int // of the omitted ones; a fixed set of codes
}

// refusalSummary is one summary record to write.
type refusalSummary struct {
	source     string
	sources    int // sources it covers (1, or more for the shared record)
	omitted    int
	codes      map[api.Code]int
	start, end time.Time
}

// sourceKey is what refusals are counted under: the client's address, an
// IPv6 client's /64 (one host commonly holds a whole /64), "local" for the
// unix socket.
func sourceKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// admit says whether a refusal from source gets a record of its own, and
// returns the summaries of a window that has ended.
func (rf *refusals) admit(source string, code api.Code, now time.Time, arm func(time.Duration)) (record bool, due []refusalSummary) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	due = rf.rollLocked(now)
	if rf.sources == nil {
		rf.sources = map[string]*refusalCount{}
		rf.start = now
	}
	c, ok := rf.sources[source]
	if !ok {
		if len(rf.sources) >= refusalSources {
			source = otherSources
			c = rf.sources[source]
		}
		if c == nil {
			c = &refusalCount{}
			rf.sources[source] = c
		}
	}
	if c.written < refusalsPerSource && rf.written < refusalsPerWindow {
		c.written++
		rf.written++
		return true, due
	}
	if c.codes == nil {
		c.codes = map[api.Code]int{}
	}
	c.omitted++
	c.codes[code]++
	if !rf.armed {
		rf.armed = true
		arm(rf.untilEndLocked(now))
	}
	return false, due
}

// untilEndLocked is how long until the window is over, a little past its
// end so that a timer set for it finds it over.
func (rf *refusals) untilEndLocked(now time.Time) time.Duration {
	return rf.start.Add(refusalWindow).Sub(now) + 10*time.Millisecond
}

// roll returns the summaries of the window if it has ended; if it has not
// (a timer fired early), it arms another.
func (rf *refusals) roll(now time.Time, arm func(time.Duration)) []refusalSummary {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	due := rf.rollLocked(now)
	if due == nil && rf.armed {
		arm(rf.untilEndLocked(now))
	}
	return due
}

func (rf *refusals) rollLocked(now time.Time) []refusalSummary {
	if rf.sources == nil || now.Before(rf.start.Add(refusalWindow)) {
		return nil
	}
	start, end := rf.start, rf.start.Add(refusalWindow)
	var out []refusalSummary
	for src, c := range rf.sources {
		if c.omitted > 0 {
			out = append(out, refusalSummary{source: src, sources: 1, omitted: c.omitted, codes: c.codes, start: start, end: end})
		}
	}
	rf.sources, rf.written, rf.armed = nil, 0, false
	sort.Slice(out, func(i, j int) bool {
		if out[i].omitted != out[j].omitted {
			return out[i].omitted > out[j].omitted
		}
		return out[i].source < out[j].source
	})
	if len(out) > refusalSummaries {
		rest := refusalSummary{source: otherSources, codes: map[api.Code]int{}, start: start, end: end}
		for _, s := range out[refusalSummaries-1:] {
			rest.sources += s.sources
			rest.omitted += s.omitted
			for k, v := range s.codes {
				rest.codes[k] += v
			}
		}
		out = append(out[:refusalSummaries-1], rest)
	}
	return out
}

// refusalAllowed counts a refusal and says whether it gets its own record;
// summaries of a window that ended are written first.
func (h *handler) refusalAllowed(source string, code api.Code) bool {
	ok, due := h.refused.admit(sourceKey(source), code, h.now(), h.armRefusalFlush)
	h.writeSummaries(due)
	return ok
}

func (h *handler) armRefusalFlush(d time.Duration) { time.AfterFunc(d, h.flushRefusals) }

// flushRefusals writes the summaries of a window that has ended.
func (h *handler) flushRefusals() {
	h.writeSummaries(h.refused.roll(h.now(), h.armRefusalFlush))
}

func (h *handler) writeSummaries(due []refusalSummary) {
	for _, s := range due {
		codes := map[string]any{}
		top, topN := api.Code(""), 0
		for k, v := range s.codes {
			codes[string(k)] = v
			if v > topN || v == topN && k < top {
				top, topN = k, v
			}
		}
		rec := &audit.Record{
			EventTime:       s.end,
			EventSource:     "sts.azote",
			EventName:       "Authenticate",
			AWSRegion:       h.cfg.Region,
			SourceIPAddress: s.source,
			RequestID:       audit.NewUUID(),
			ReadOnly:        true,
			EventType:       "AwsServiceEvent",
			ManagementEvent: true,
			UserIdentity:    audit.UserIdentity{Type: "Unknown"},
			ErrorCode:       string(top),
			ErrorMessage: fmt.Sprintf("%d more requests refused before authentication from %s between %s and %s were not recorded one by one",
				s.omitted, s.source, s.start.UTC().Format(time.RFC3339), s.end.UTC().Format(time.RFC3339)),
			AdditionalEventData: map[string]any{
				"refusalSummary": true,
				"omittedCount":   s.omitted,
				"errorCodes":     codes,
				"windowStart":    s.start.UTC().Format(time.RFC3339),
				"windowEnd":      s.end.UTC().Format(time.RFC3339),
				"sources":        s.sources,
			},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.cfg.Audit.Append(ctx, rec); err != nil {
			h.log.Error("audit append of a refusal summary failed", "source", s.source, "omitted", s.omitted, "err", err)
		}
		cancel()
	}
}

func (h *handler) now() time.Time {
	if h.cfg.Now != nil {
		return h.cfg.Now()
	}
	return time.Now()
}
