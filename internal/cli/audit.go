package cli

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"github.com/spf13/pflag"
	"os"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/audit"
)

var auditCommands = []command{
	{use: "lookup", short: "search the audit trail (--principal --event-name --resource --error-code --start-time --end-time)", build: auditLookup,
		example: "azote audit lookup --principal alice --start-time 2h --errors"},
	{use: "validate", short: "check the trail's digest chain: modified, deleted, missing, out-of-chain files", build: auditValidate,
		example: "azote audit validate --start-time 24h"},
	{use: "collect", short: "copy the trail off the host over the signed API, validating the chain as it goes", build: auditCollect,
		example: "azote audit collect --dir /srv/trail --interval 5m --profile auditor"},
}

// auditEvent is the part of a record the CLI shows.
type auditEvent struct {
	EventTime    string `json:"eventTime"`
	EventSource  string `json:"eventSource"`
	EventName    string `json:"eventName"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
	SourceIP     string `json:"sourceIPAddress"`
	ReadOnly     bool   `json:"readOnly"`
	UserIdentity struct {
		Type        string `json:"type"`
		ARN         string `json:"arn"`
		UserName    string `json:"userName"`
		AccessKeyID string `json:"accessKeyId"`
	} `json:"userIdentity"`
	RequestParameters map[string]any `json:"requestParameters"`
	Resources         []struct {
		ARN string `json:"ARN"`
	} `json:"resources"`
}

func (ev auditEvent) who() string {
	switch {
	case ev.UserIdentity.ARN != "":
		return ev.UserIdentity.ARN
	case ev.UserIdentity.AccessKeyID != "":
		return ev.UserIdentity.Type + " key " + ev.UserIdentity.AccessKeyID
	}
	return ev.UserIdentity.Type
}

func (ev auditEvent) target() string {
	if len(ev.Resources) > 0 {
		return ev.Resources[0].ARN
	}
	var parts []string
	for _, k := range []string{"UserName", "GroupName", "RoleName", "PolicyArn", "PolicyName", "path"} {
		if v, ok := ev.RequestParameters[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}

func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("time %q: want RFC 3339 (2026-11-27T08:00:00Z) or a duration ago (2h)", s)
	}
	return t, nil
}

// timeRange reads --start-time and --end-time; a bad one is a mistake
// on the command line.
func timeRange(start, end string) (from, to time.Time, err error) {
	if from, err = parseWhen(start); err != nil {
		return from, to, usageError{msg: err.Error()}
	}
	if to, err = parseWhen(end); err != nil {
		return from, to, usageError{msg: err.Error()}
	}
	return from, to, nil
}

func auditLookup(e *env, fs *pflag.FlagSet) runFunc {
	var r api.LookupEventsRequest
	fs.StringVar(&r.Principal, "principal", "", "ARN, user name or access key id")
	fs.StringVar(&r.EventName, "event-name", "", "e.g. RunInstances")
	fs.StringVar(&r.Resource, "resource", "", "text of a resource ARN or request parameter")
	fs.StringVar(&r.ErrorCode, "error-code", "", "e.g. AccessDenied")
	fs.BoolVar(&r.OnlyErrors, "errors", false, "only failed or refused calls")
	start := fs.String("start-time", "", "from (RFC 3339, or a duration ago: 2h); old names --start, --since")
	end := fs.String("end-time", "", "to (RFC 3339, or a duration ago); old name --end")
	fs.IntVar(&r.Limit, "limit", 100, "at most this many events, newest first")
	return func(ctx context.Context, pos []string) error {
		var err error
		if r.StartTime, r.EndTime, err = timeRange(*start, *end); err != nil {
			return err
		}
		var raw struct {
			Events []json.RawMessage `json:"Events"`
		}
		if err := e.client.Call(ctx, "audit:LookupEvents", r, &raw); err != nil {
			return err
		}
		if e.structured() {
			return e.emit(raw.Events)
		}
		var rows [][]string
		for _, m := range raw.Events {
			var ev auditEvent
			json.Unmarshal(m, &ev)
			result := "ok"
			if ev.ErrorCode != "" {
				result = ev.ErrorCode
			}
			rows = append(rows, []string{ev.EventTime, ev.who(), strings.TrimSuffix(ev.EventSource, ".azote") + ":" + ev.EventName, ev.SourceIP, result, ev.target()})
		}
		e.table("TIME\tPRINCIPAL\tEVENT\tSOURCE\tRESULT\tTARGET", rows)
		return nil
	}
}

func auditValidate(e *env, fs *pflag.FlagSet) runFunc {
	from := fs.String("start-time", "", "start of the period (RFC 3339 or a duration ago: 24h); old name --from")
	to := fs.String("end-time", "", "end of the period (RFC 3339 or a duration ago); old name --to")
	dir := fs.String("dir", "", "validate a local copy (made by audit collect) with its pinned keys instead of asking azoted")
	keysFrom := fs.String("keys", "", "with --dir: trust these keys (a PEM file, or a directory of them such as azoted's audit-keys) instead of the copy's pinned ones; never the trail's own public-keys/")
	return func(ctx context.Context, pos []string) error {
		if *keysFrom != "" && *dir == "" {
			return usageError{msg: "--keys needs --dir"}
		}
		f, t, err := timeRange(*from, *to)
		if err != nil {
			return err
		}
		var rep audit.Report
		if *dir != "" {
			keys, err := validationKeys(*dir, *keysFrom)
			if err != nil {
				return err
			}
			if rep, err = audit.Validate(*dir, keys, f, t); err != nil {
				return err
			}
		} else if err := e.client.Call(ctx, "audit:ValidateLogs", api.ValidateLogsRequest{StartTime: f, EndTime: t, Rotate: true}, &rep); err != nil {
			return err
		}
		if e.structured() {
			if err := e.emit(rep); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(e.stdout, "%d digest file(s), %d log file(s) checked", rep.Digests, rep.LogFiles)
			if !rep.From.IsZero() {
				fmt.Fprintf(e.stdout, ", %s to %s", rep.From.UTC().Format(time.RFC3339), rep.To.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(e.stdout)
			for _, p := range rep.Problems {
				fmt.Fprintf(e.stdout, "%-15s %s: %s\n", p.Kind, p.File, p.Detail)
			}
			if len(rep.Problems) == 0 {
				fmt.Fprintln(e.stdout, "the trail is intact")
			}
		}
		if len(rep.Problems) > 0 {
			return fmt.Errorf("%d problem(s) in the audit trail", len(rep.Problems))
		}
		return nil
	}
}

// validationKeys are the keys to validate the trail in dir with: those in
// keysFrom (a PEM file or a directory of them) when given, else the
// collector's pinned keys.
func validationKeys(dir, keysFrom string) (map[string]*rsa.PublicKey, error) {
	if keysFrom == "" {
		return audit.TrustedKeys(dir)
	}
	fi, err := os.Stat(keysFrom)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		keys, err := audit.PinnedKeys(keysFrom, nil)
		if err == nil && len(keys) == 0 {
			err = fmt.Errorf("%s: %w", keysFrom, audit.ErrNoTrustedKey)
		}
		return keys, err
	}
	b, err := os.ReadFile(keysFrom)
	if err != nil {
		return nil, err
	}
	pub, fp, err := audit.ParsePublicKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keysFrom, err)
	}
	return map[string]*rsa.PublicKey{fp: pub}, nil
}

// apiSource pulls trail files over the signed API.
type apiSource struct{ c *client.Client }

func (s apiSource) List(ctx context.Context, after string) ([]string, error) {
	var out struct {
		Files []string `json:"Files"`
	}
	err := s.c.Call(ctx, "audit:ListLogFiles", api.ListLogFilesRequest{After: after}, &out)
	return out.Files, err
}

func (s apiSource) Fetch(ctx context.Context, rel string) ([]byte, error) {
	return s.c.AuditFile(ctx, rel)
}

func auditCollect(e *env, fs *pflag.FlagSet) runFunc {
	dir := fs.String("dir", "", "where to keep the copy (created)")
	interval := fs.Duration("interval", 0, "keep collecting at this interval (0: once)")
	return func(ctx context.Context, pos []string) error {
		if *dir == "" {
			return usageError{msg: "--dir is required"}
		}
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return err
		}
		for {
			var pinned *rsa.PublicKey
			keys, err := audit.TrustedKeys(*dir)
			if err != nil || len(keys) == 0 {
				// First collection: trust the host's current key, once.
				var info struct {
					PublicKey string `json:"PublicKey"`
				}
				if err := e.client.Call(ctx, "audit:GetTrailInfo", nil, &info); err != nil {
					return err
				}
				k, _, err := audit.ParsePublicKeyPEM([]byte(info.PublicKey))
				if err != nil {
					return err
				}
				pinned = k
				e.progress("pinning the trail's signing key (first collection)")
			}
			res, err := audit.Collect(ctx, apiSource{e.client}, *dir, pinned)
			if e.structured() {
				e.emit(res)
			} else {
				fmt.Fprintf(e.stdout, "%s listed %d, fetched %d, unchanged %d; copy: %d digest(s), %d log file(s), %d problem(s)\n",
					time.Now().UTC().Format(time.RFC3339), res.Listed, res.Fetched, res.Unchanged, res.Report.Digests, res.Report.LogFiles, len(res.Report.Problems))
				for _, p := range res.Rewritten {
					fmt.Fprintf(e.stdout, "REWRITTEN on the host: %s (collected copy kept)\n", p)
				}
				for _, p := range res.Deleted {
					fmt.Fprintf(e.stdout, "DELETED on the host: %s (collected copy kept)\n", p)
				}
				for _, p := range res.Refused {
					fmt.Fprintf(e.stdout, "REFUSED digest: %s\n", p)
				}
				for _, p := range res.Report.Problems {
					fmt.Fprintf(e.stdout, "%-15s %s: %s\n", p.Kind, p.File, p.Detail)
				}
			}
			if err != nil {
				return err
			}
			if len(res.Rewritten)+len(res.Deleted)+len(res.Refused)+len(res.Report.Problems) > 0 {
				return fmt.Errorf("the host's trail does not match what was collected")
			}
			if *interval <= 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(*interval):
			}
		}
	}
}
