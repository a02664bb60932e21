package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/azote/azote/internal/api"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/api/sigv4"
	"github.com/azote/azote/internal/audit"
)

// Auth authenticates callers and authorises their actions (the IAM).
type Auth interface {
	// Credentials resolves an access key (and session token) of a signed
	// request: its secret, whether it is active and who it stands for.
	Credentials(akid, token string) (secret string, active bool, c *api.Caller, err error)
	// HostRoot is the caller of the root-only unix socket.
	HostRoot(pid int32) *api.Caller
	// Authorize decides; extra holds the request's condition keys
	// (aws:ResourceTag/KEY of the resource, the call's own keys such as
	// aws:RequestTag/KEY or iam:PolicyARN), lower-cased; reason says why,
	// for the error and the trail.
	Authorize(c *api.Caller, action, resource string, extra map[string][]string) (allowed bool, reason string)
	AccountID() string
}

// Auditor makes audit records durable before Append returns, with the
// values of secret-looking keys redacted (audit.Trail does both), so the
// handler hands it requests and answers as they are.
type Auditor interface {
	Append(ctx context.Context, r *audit.Record) error
}

// Config configures one API handler: the unix-socket one (Network false:
// callers identified by SO_PEERCRED) or the HTTPS one (every request
// SigV4-signed).
type Config struct {
	Backend Backend
	// Operations are the action-style APIs (IAM, STS, audit):
	// POST /v1/<service>/<Action> with a JSON body.
	Operations []*api.Operation
	// KMS, when set, serves AWS KMS's own protocol: POST / with
	// X-Amz-Target TrentService.<Operation>, signed for service kms.
	KMS  JSONService
	Auth Auth
	// Profiles resolves the instance profile a launch names (nil: a
	// launch with one is refused).
	Profiles InstanceProfiles
	Audit    Auditor
	Log      *slog.Logger
	Region   string
	HostName string
	Network  bool
	// Files serves audit log and digest files for collectors (GET
	// /v1/audit/files/<path>), as audit:GetLogFile.
	Files func(ctx context.Context, rel string) ([]byte, error)
	Now   func() time.Time
	// Started is when this process started: requests signed before it
	// are refused, since the replay cache of a previous process is gone.
	Started time.Time
	// Mark records the dates of requests accepted ahead of the host
	// clock, for the next process to refuse (sigv4.Verifier.Mark).
	Mark *sigv4.Mark

	// afterAuthorize, set by tests in this package, runs between the
	// decision and the action.
	afterAuthorize func(*http.Request)
}

type handler struct {
	// results counts answered requests by error code ("" = success).
	results sync.Map // string → *atomic.Uint64

	b        Backend
	cfg      Config
	log      *slog.Logger
	ops      map[string]*api.Operation
	hostName string
	verifier *sigv4.Verifier
	refused  refusals
}

// NewHandler builds the controller API.
func NewHandler(cfg Config) http.Handler {
	h := &handler{b: cfg.Backend, cfg: cfg, log: cfg.Log, ops: map[string]*api.Operation{}, hostName: cfg.HostName}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if h.hostName == "" {
		h.hostName = "local"
	}
	for _, op := range cfg.Operations {
		h.ops[strings.ToLower(op.Name)] = op
	}
	h.verifier = &sigv4.Verifier{Region: cfg.Region, Service: api.Service, Now: cfg.Now, NotBefore: cfg.Started, Mark: cfg.Mark}
	if cfg.KMS != nil {
		// Each signing name reaches only its own service's routes
		// (serveJSON11, and serve for azote's).
		h.verifier.Services = []string{api.Service, api.KMSService}
	}
	mux := http.NewServeMux()
	h.register(mux)
	return h.recoverer(h.authenticate(mux))
}

func (h *handler) arn(service, resource string) string {
	return api.MakeARN(service, h.cfg.Auth.AccountID(), resource)
}

// testPeerKey lets in-package tests stand in for a unix peer; it cannot
// be set from outside the package.
type testPeerKey struct{}

type requestInfo struct {
	// tags are the resource's tags, for aws:ResourceTag/KEY conditions.
	tags   map[string]string
	id     string
	start  time.Time
	body   []byte // the request body when it was read for the signature
	caller *api.Caller
	also   []string // further resources the call was authorised on
	// alsoTags are the tags of further resources, by ARN.
	alsoTags map[string]map[string]string
	// conds are the request's own condition keys (aws:RequestTag/KEY,
	// aws:TagKeys, iam:PolicyARN, azote:Encrypted), for every resource
	// the call is authorised on; bad refuses the call before any
	// decision (tags that would make the context ambiguous).
	conds map[string][]string
	bad   *api.Error
	// service is the signing name of a network request ("" on the unix
	// socket).
	service string
}

type infoKey struct{}

func info(r *http.Request) *requestInfo {
	ri, _ := r.Context().Value(infoKey{}).(*requestInfo)
	if ri == nil {
		ri = &requestInfo{}
	}
	return ri
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authenticate establishes the caller of every request before routing:
// the peer of the unix socket, or the SigV4 signature on the network.
// A refused request is audited with its source address.
func (h *handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := &requestInfo{id: audit.NewUUID(), start: time.Now()}
		w.Header().Set("X-Amzn-RequestId", ri.id)
		ctx := context.WithValue(r.Context(), infoKey{}, ri)
		r = r.WithContext(ctx)
		var c *api.Caller
		if !h.cfg.Network {
			conn, _ := r.Context().Value(connKey{}).(net.Conn)
			pid, err := rootPeer(conn)
			if p, ok := r.Context().Value(testPeerKey{}).(int32); ok && conn == nil {
				pid, err = p, nil
			}
			if err != nil {
				h.refuse(w, r, "", api.Errorf(api.CodeAccessDenied, "%v", err))
				return
			}
			c = h.cfg.Auth.HostRoot(pid)
		} else {
			var err *api.Error
			c, err = h.verify(r, ri)
			if err != nil {
				h.refuse(w, r, akidOf(r), err)
				return
			}
			c.SourceIP = sourceIP(r)
			c.Secure = r.TLS != nil
		}
		c.UserAgent = r.UserAgent()
		ri.caller = c
		if err := h.auditErr(); err != nil {
			// Nothing runs that could not be recorded. The refusal itself
			// cannot be recorded either; it changes nothing.
			h.count(api.CodeAuditUnavailable)
			answerError(w, r, auditUnavailable(err))
			return
		}
		next.ServeHTTP(w, r.WithContext(api.WithCaller(ctx, c)))
	})
}

func akidOf(r *http.Request) string {
	a, err := sigv4.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return ""
	}
	return a.AccessKeyID
}

// verify checks the signature. The body is read (bounded) and hashed
// first, except for uploads that say UNSIGNED-PAYLOAD (rawUpload): blobs
// are content-addressed and their SHA-384 is verified as they are
// stored, an import's SHA-256 by the card that writes it.
func (h *handler) verify(r *http.Request, ri *requestInfo) (*api.Caller, *api.Error) {
	payload := sigv4.UnsignedPayload
	if !(rawUpload(r) && r.Header.Get("X-Amz-Content-Sha256") == sigv4.UnsignedPayload) {
		data, err := io.ReadAll(io.LimitReader(r.Body, api.MaxBodyBytes+1))
		if err != nil {
			return nil, api.Errorf(api.CodeMalformedRequest, "reading body: %v", err)
		}
		if len(data) > api.MaxBodyBytes {
			return nil, api.Errorf(api.CodeRequestTooLarge, "request body exceeds %d bytes", api.MaxBodyBytes)
		}
		ri.body = data
		r.Body = io.NopCloser(bytes.NewReader(data))
		payload = sigv4.HashPayload(data)
	}
	var caller *api.Caller
	v, err := h.verifier.Verify(r, payload, func(akid, token string) (sigv4.Key, error) {
		secret, active, c, err := h.cfg.Auth.Credentials(akid, token)
		if err != nil {
			return sigv4.Key{}, err
		}
		caller = c
		return sigv4.Key{Secret: secret, Active: active}, nil
	})
	if err != nil {
		return nil, authError(err)
	}
	ri.service = v.Auth.Service
	return caller, nil
}

// authError maps a verification failure to its stable code. The message
// says what is wrong with the request, never which keys exist.
func authError(err error) *api.Error {
	switch {
	case errors.Is(err, sigv4.ErrMissingAuth):
		return api.Errorf(api.CodeMissingAuthentication, "request is not signed: every network request needs SigV4 (service %q)", api.Service)
	case errors.Is(err, sigv4.ErrIncomplete):
		return api.Errorf(api.CodeIncompleteSignature, "%v", err)
	case errors.Is(err, sigv4.ErrSignatureMismatch):
		return api.Errorf(api.CodeSignatureDoesNotMatch, "the request signature does not match")
	case errors.Is(err, sigv4.ErrSkew):
		return api.Errorf(api.CodeRequestExpired, "%v", err)
	case errors.Is(err, sigv4.ErrReplay):
		return api.Errorf(api.CodeRequestReplayed, "this signed request was already received")
	case errors.Is(err, sigv4.ErrReplayCacheFull):
		return api.Errorf(api.CodeThrottling, "too many requests in the replay window")
	case errors.Is(err, sigv4.ErrMarkUnwritable):
		return api.Errorf(api.CodeInternal, "the server cannot record this request's date, which is ahead of its clock; sign it again with the host's time")
	case errors.Is(err, sigv4.ErrInactiveKey):
		return api.Errorf(api.CodeInvalidClientTokenID, "the access key is inactive")
	case errors.Is(err, sigv4.ErrExpiredToken):
		return api.Errorf(api.CodeExpiredToken, "the session token is expired or invalid")
	}
	return api.Errorf(api.CodeInvalidClientTokenID, "the access key does not exist")
}

// refuse answers a request that failed authentication and audits it:
// with what it says about itself cut short, and only as often as
// refusalAllowed lets one source have a record of its own (the others
// are counted into a summary).
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, akid string, e *api.Error) {
	ri := info(r)
	src := sourceIP(r)
	if !h.cfg.Network {
		src = "local"
	}
	if !h.refusalAllowed(src, e.Code) {
		h.count(e.Code)
		answerError(w, r, e)
		return
	}
	rec := h.baseRecord(r, ri, &api.Caller{Type: "Unknown", AccessKeyID: audit.Truncate(akid, maxRefusedKeyID)}, "", false)
	rec.EventName = "Authenticate"
	rec.EventSource = "sts.azote"
	rec.UserAgent = audit.Truncate(rec.UserAgent, maxRefusedAgent)
	rec.ErrorCode, rec.ErrorMessage = string(e.Code), audit.Truncate(e.Message, maxRefusedMsg)
	rec.RequestParameters = map[string]any{"method": audit.Truncate(r.Method, maxRefusedMethod), "path": audit.Truncate(r.URL.Path, maxRefusedPath)}
	if err := h.record(r.Context(), rec); err != nil {
		h.log.Error("audit append failed", "err", err)
	}
	answerError(w, r, e)
}

// deny answers an authenticated request that is refused before it runs
// (no route, not authorised, malformed) and audits it.
func (h *handler) deny(w http.ResponseWriter, r *http.Request, action, resource string, e *api.Error) {
	ri := info(r)
	rec := h.baseRecord(r, ri, ri.caller, action, false)
	rec.ErrorCode, rec.ErrorMessage = string(e.Code), e.Message
	if resource != "" && resource != "*" {
		rec.Resources = []audit.Resource{{ARN: resource, AccountID: h.cfg.Auth.AccountID()}}
	}
	for _, a := range ri.also {
		rec.Resources = append(rec.Resources, audit.Resource{ARN: a, AccountID: h.cfg.Auth.AccountID()})
	}
	rec.RequestParameters = map[string]any{"method": audit.Truncate(r.Method, maxRefusedMethod), "path": audit.Truncate(r.URL.Path, audit.MaxFieldBytes)}
	if isJSON11(r) {
		rec.EventSource = api.KMSEventSource
	}
	if err := h.record(r.Context(), rec); err != nil {
		h.log.Error("audit append failed", "err", err)
	}
	answerError(w, r, e)
}

func (h *handler) baseRecord(r *http.Request, ri *requestInfo, c *api.Caller, action string, readOnly bool) *audit.Record {
	src, name, _ := strings.Cut(action, ":")
	rec := &audit.Record{
		EventTime:       ri.start,
		EventSource:     src + ".azote",
		EventName:       name,
		AWSRegion:       h.cfg.Region,
		SourceIPAddress: sourceIP(r),
		UserAgent:       r.UserAgent(),
		RequestID:       ri.id,
		ReadOnly:        readOnly,
		EventType:       "AwsApiCall",
		ManagementEvent: true,
	}
	if !h.cfg.Network {
		rec.SourceIPAddress = "local"
	}
	if c != nil {
		rec.UserIdentity = Identity(c)
	}
	return rec
}

// record counts a request's result and appends its audit record.
func (h *handler) record(ctx context.Context, rec *audit.Record) error {
	h.count(api.Code(rec.ErrorCode))
	return h.cfg.Audit.Append(ctx, rec)
}

// count counts a request's result ("" = success).
func (h *handler) count(code api.Code) {
	v, _ := h.results.LoadOrStore(string(code), new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// auditErr is the error of an audit trail that cannot write now, if the
// Auditor can tell.
func (h *handler) auditErr() error {
	if a, ok := h.cfg.Audit.(interface{ Err() error }); ok {
		return a.Err()
	}
	return nil
}

// auditUnavailable is the answer to a call whose audit record could not be
// written: the call is refused, never answered unaudited.
func auditUnavailable(err error) *api.Error {
	if errors.Is(err, audit.ErrFailed) {
		return api.Errorf(api.CodeAuditUnavailable, "the audit trail cannot write (a full disk or an I/O error on the host); calls are refused until it can, which it retries every second")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return api.Errorf(api.CodeAuditUnavailable, "the audit record of this call was not confirmed before the request ended")
	}
	return api.Errorf(api.CodeAuditUnavailable, "the audit trail is unavailable")
}

// writeMetrics writes the request counters in Prometheus text format.
func (h *handler) writeMetrics(w io.Writer) {
	door := "local"
	if h.cfg.Network {
		door = "network"
	}
	fmt.Fprintln(w, "# HELP azote_api_requests_total API requests answered on this door, by result (an error code, or ok).")
	fmt.Fprintln(w, "# TYPE azote_api_requests_total counter")
	var keys []string
	h.results.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := h.results.Load(k)
		res := k
		if res == "" {
			res = "ok"
		}
		fmt.Fprintf(w, "azote_api_requests_total{door=%q,result=%q} %d\n", door, res, v.(*atomic.Uint64).Load())
	}
}

// Identity renders a caller as CloudTrail's userIdentity.
func Identity(c *api.Caller) audit.UserIdentity {
	id := audit.UserIdentity{Type: c.Type, PrincipalID: c.PrincipalID, ARN: c.ARN, AccountID: c.AccountID, AccessKeyID: c.AccessKeyID}
	if c.Type == api.PrincipalUser || c.Type == api.PrincipalRoot || c.Type == api.PrincipalHostRoot {
		id.UserName = c.UserName
	}
	if c.Session {
		sc := &audit.SessionContext{Attributes: audit.SessionAttributes{CreationDate: c.SessionCreated, MFAAuthenticated: c.MFA}}
		if c.IssuerARN != "" {
			sc.SessionIssuer = &audit.SessionIssuer{Type: c.IssuerType, ARN: c.IssuerARN, AccountID: c.AccountID, UserName: c.IssuerName}
		}
		if c.SourceInstance != "" {
			sc.EC2RoleDelivery = "2.0"
			sc.SourceInstanceARN = api.MakeARN("compute", c.AccountID, "instance/"+c.SourceInstance)
		}
		id.SessionContext = sc
	}
	return id
}

// authorize asks the IAM; a refusal is answered and audited here.
func (h *handler) authorize(w http.ResponseWriter, r *http.Request, action, resource string) bool {
	ri := info(r)
	err := ri.bad
	if err == nil {
		err = h.check(ri.caller, action, resource, ri.tags, ri.conds)
	}
	if err != nil {
		h.deny(w, r, action, resource, err)
	}
	return err == nil
}

// check evaluates the caller's policies for action on resource, whose tags
// answer aws:ResourceTag/KEY conditions; conds are the request's own keys.
func (h *handler) check(c *api.Caller, action, resource string, tags map[string]string, conds map[string][]string) *api.Error {
	// Condition keys are case-insensitive: of two tags whose keys differ
	// only in case, which one a policy saw would depend on map order.
	// Such tags are refused at creation; a resource made before that
	// was refused is left to host root (break-glass) rather than decided
	// on a guess.
	if a, b, ok := api.FoldedTagKeys(tags); ok && c.Type != api.PrincipalHostRoot {
		return api.Errorf(api.CodeDuplicateTagKeys, "%s has tag keys %q and %q that differ only in case, which no policy can tell apart; only host root may act on it", resource, a, b)
	}
	var extra map[string][]string
	if len(tags)+len(conds) > 0 {
		extra = make(map[string][]string, len(tags)+len(conds))
		for k, v := range conds {
			extra[k] = v
		}
		for k, v := range tags {
			extra["aws:resourcetag/"+strings.ToLower(k)] = []string{v}
		}
	}
	if ok, reason := h.cfg.Auth.Authorize(c, action, resource, extra); !ok {
		return api.Errorf(api.CodeAccessDenied, "%s is not authorized to perform %s on %s: %s", c.ARN, action, resource, reason)
	}
	return nil
}

// requestTagKeys adds the keys of tags given at creation, as AWS names
// them: aws:RequestTag/KEY for each tag and aws:TagKeys for the set of
// keys. Keys that differ only in case are refused, as api.ValidateTags does:
// the context would hold one of them at random.
func requestTagKeys(tags map[string]string, into map[string][]string) *api.Error {
	if a, b, ok := api.FoldedTagKeys(tags); ok {
		return api.Errorf(api.CodeDuplicateTagKeys, "tag keys %q and %q differ only in case: policies match tag keys case-insensitively", a, b)
	}
	if len(tags) == 0 {
		return nil
	}
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		into["aws:requesttag/"+strings.ToLower(k)] = []string{v}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	into["aws:tagkeys"] = keys
	return nil
}

// createVolumeKeys are the request keys of compute:CreateVolume: its tags
// and azote:Encrypted (false for --plaintext), as ec2:Encrypted.
func createVolumeKeys(body []byte) (map[string][]string, *api.Error) {
	var req api.CreateVolumeRequest
	if len(body) > 0 && json.Unmarshal(body, &req) != nil {
		return nil, nil
	}
	m := map[string][]string{"azote:encrypted": {strconv.FormatBool(!req.Plaintext)}}
	return m, requestTagKeys(req.Tags, m)
}

// runInstanceKeys are the request keys of compute:RunInstances: its tags.
func runInstanceKeys(body []byte) (map[string][]string, *api.Error) {
	var req api.RunInstanceRequest
	if len(body) > 0 && json.Unmarshal(body, &req) != nil {
		return nil, nil
	}
	m := map[string][]string{}
	return m, requestTagKeys(req.Tags, m)
}

// requestParams is what the trail keeps of a REST request: path values,
// query and JSON body (the Auditor redacts secrets).
func requestParams(r *http.Request, body []byte) map[string]any {
	m := map[string]any{"method": r.Method, "path": audit.Truncate(r.URL.Path, audit.MaxFieldBytes)}
	if q := r.URL.Query(); len(q) > 0 {
		// The query is the caller's to size (up to the header limit):
		// what the trail keeps of it is bounded like the body.
		qm := map[string]any{}
		for k, v := range q {
			if len(qm) == maxQueryParams {
				m["queryTruncated"] = true
				break
			}
			qm[audit.Truncate(k, 128)] = audit.Truncate(strings.Join(v, ","), audit.MaxFieldBytes)
		}
		m["query"] = qm
	}
	if len(body) > 0 && !rawUpload(r) {
		var v any
		if json.Unmarshal(body, &v) == nil {
			m["body"] = v
			redactUserData(m)
		}
	}
	return m
}

// maxQueryParams bounds the query parameters a record keeps.
const maxQueryParams = 32

func toMap(v any) map[string]any {
	if v == nil {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return map[string]any{"unencodable": fmt.Sprintf("%T", v)}
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		var v any
		json.Unmarshal(raw, &v)
		m = map[string]any{"value": v}
	}
	return m
}

// capture keeps the first bytes a handler reads of a body, for the trail.
type capture struct {
	r   io.ReadCloser
	buf bytes.Buffer
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if room := api.MaxBodyBytes - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(n, room)])
	}
	return n, err
}

func (c *capture) Close() error { return c.r.Close() }
func (c *capture) data() []byte { return c.buf.Bytes() }
