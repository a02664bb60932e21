package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"github.com/azote/azote/internal/api"
	"io"
	"log"
	"net"
	"net/http"
	"path"
	"strconv"
	"time"
)

// Backend is what the API serves; the controller implements it. Errors
// returned as *api.Error keep their code; any other error becomes InternalError.
type Backend interface {
	HostInfo(ctx context.Context) api.HostInfo
	RunInstance(ctx context.Context, r api.RunInstanceRequest) (api.Instance, error)
	ListInstances(ctx context.Context) ([]api.Instance, error)
	// DescribeInstance returns the instance; with wait > 0 it first waits
	// until its revision differs from after (long poll).
	DescribeInstance(ctx context.Context, ref string, after uint64, wait time.Duration) (api.Instance, error)
	ModifyInstance(ctx context.Context, ref string, r api.ModifyInstanceRequest) (api.Instance, error)
	StopInstance(ctx context.Context, ref string, r api.StopInstanceRequest) (api.Instance, error)
	StartInstance(ctx context.Context, ref string) (api.Instance, error)
	RebootInstance(ctx context.Context, ref string) (api.Instance, error)
	TerminateInstance(ctx context.Context, ref string) (api.Instance, error)
	// Console writes the last tail bytes of the console to w; with follow
	// it keeps writing new output until ctx ends or the instance is gone.
	Console(ctx context.Context, ref string, tail int64, follow bool, w io.Writer, flush func()) error
	PutBlob(ctx context.Context, sha384 string, r io.Reader) error
	CreateImage(ctx context.Context, r api.CreateImageRequest) (api.CreateImageResponse, error)
	ListImages(ctx context.Context) ([]api.Image, error)
	DescribeImage(ctx context.Context, ref string) (api.Image, error)
	// DeleteImage returns the id of the image it deleted.
	DeleteImage(ctx context.Context, ref string) (string, error)

	CreateVolume(ctx context.Context, r api.CreateVolumeRequest) (api.Volume, error)
	ListVolumes(ctx context.Context) ([]api.Volume, error)
	DescribeVolume(ctx context.Context, ref string) (api.Volume, error)
	ModifyVolume(ctx context.Context, ref string, r api.ModifyVolumeRequest) (api.Volume, error)
	// DeleteVolume deletes a volume; a persistent one stays recoverable
	// for the retention window unless now is set.
	DeleteVolume(ctx context.Context, ref string, now bool) (api.Volume, error)
	RestoreVolume(ctx context.Context, ref string) (api.Volume, error)
	AttachVolume(ctx context.Context, ref string, r api.AttachVolumeRequest) (api.Volume, error)
	DetachVolume(ctx context.Context, ref string) (api.Volume, error)
	// WriteMetrics writes Prometheus text format.
	WriteMetrics(ctx context.Context, w io.Writer) error
	// ResolveID turns a reference (id or name) to an object of kind
	// (instance, volume, image) into its id and tags; an unknown ref is
	// returned unchanged, without tags.
	ResolveID(ctx context.Context, kind, ref string) (string, map[string]string)
}

// Every route: its action (what policies name and the audit trail
// records), whether it only reads, the resource it acts on and its
// handler. Nothing is routed without an action.
func (h *handler) routes(mux *http.ServeMux) {
	b := h.b
	inst := h.arnOf("instance")
	vol := h.arnOf("volume")
	img := h.arnOf("image")
	star := func(*http.Request) string { return "*" }
	host := func(*http.Request) string { return h.arn("compute", "host/"+h.hostName) }

	h.route(mux, "GET /v1/host", "compute:DescribeHost", true, host, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.HostInfo(r.Context()))
	})
	h.route(mux, "POST /v1/instances", "compute:RunInstances", false, h.withRequestKeys(func(*http.Request) string { return h.arn("compute", "instance/*") }, runInstanceKeys), h.runInstance)
	h.route(mux, "GET /v1/instances", "compute:DescribeInstances", true, star, func(w http.ResponseWriter, r *http.Request) {
		list, err := b.ListInstances(r.Context())
		h.reply(w, r, list, err)
	})
	h.route(mux, "GET /v1/instances/{ref}", "compute:DescribeInstances", true, inst, h.describeInstance)
	h.route(mux, "PATCH /v1/instances/{ref}", "compute:ModifyInstanceAttribute", false, inst, h.modifyInstance)
	for _, a := range []struct{ path, action string }{
		{"stop", "compute:StopInstances"}, {"start", "compute:StartInstances"},
		{"reboot", "compute:RebootInstances"}, {"terminate", "compute:TerminateInstances"},
	} {
		h.route(mux, "POST /v1/instances/{ref}/"+a.path, a.action, false, inst, h.instanceAction)
	}
	h.streamRoute(mux, "GET /v1/instances/{ref}/console", "compute:GetConsoleOutput", inst, h.console)
	h.route(mux, "PUT /v1/blobs/{digest}", "compute:PutImageBlob", false, func(*http.Request) string { return h.arn("compute", "image/*") }, func(w http.ResponseWriter, r *http.Request) {
		err := b.PutBlob(r.Context(), r.PathValue("digest"), r.Body)
		h.reply(w, r, map[string]string{"sha384": r.PathValue("digest")}, err)
	})
	h.route(mux, "POST /v1/images", "compute:CreateImage", false, func(*http.Request) string { return h.arn("compute", "image/*") }, h.createImage)
	h.route(mux, "GET /v1/images", "compute:DescribeImages", true, star, func(w http.ResponseWriter, r *http.Request) {
		list, err := b.ListImages(r.Context())
		h.reply(w, r, list, err)
	})
	h.route(mux, "GET /v1/images/{ref}", "compute:DescribeImages", true, img, func(w http.ResponseWriter, r *http.Request) {
		im, err := b.DescribeImage(r.Context(), r.PathValue("ref"))
		h.reply(w, r, im, err)
	})
	h.route(mux, "DELETE /v1/images/{ref}", "compute:DeleteImage", false, img, func(w http.ResponseWriter, r *http.Request) {
		id, err := b.DeleteImage(r.Context(), r.PathValue("ref"))
		h.reply(w, r, map[string]string{"deleted": id}, err)
	})
	h.route(mux, "POST /v1/volumes", "compute:CreateVolume", false, h.withRequestKeys(func(*http.Request) string { return h.arn("compute", "volume/*") }, createVolumeKeys), func(w http.ResponseWriter, r *http.Request) {
		var req api.CreateVolumeRequest
		if e := decode(w, r, &req); e != nil {
			writeError(w, e)
			return
		}
		v, err := b.CreateVolume(r.Context(), req)
		h.reply(w, r, v, err)
	})
	h.route(mux, "GET /v1/volumes", "compute:DescribeVolumes", true, star, func(w http.ResponseWriter, r *http.Request) {
		list, err := b.ListVolumes(r.Context())
		h.reply(w, r, list, err)
	})
	h.route(mux, "GET /v1/volumes/{ref}", "compute:DescribeVolumes", true, vol, func(w http.ResponseWriter, r *http.Request) {
		v, err := b.DescribeVolume(r.Context(), r.PathValue("ref"))
		h.reply(w, r, v, err)
	})
	h.route(mux, "PATCH /v1/volumes/{ref}", "compute:ModifyVolume", false, vol, func(w http.ResponseWriter, r *http.Request) {
		var req api.ModifyVolumeRequest
		if e := decode(w, r, &req); e != nil {
			writeError(w, e)
			return
		}
		v, err := b.ModifyVolume(r.Context(), r.PathValue("ref"), req)
		h.reply(w, r, v, err)
	})
	h.route(mux, "DELETE /v1/volumes/{ref}", "compute:DeleteVolume", false, vol, func(w http.ResponseWriter, r *http.Request) {
		now := r.URL.Query().Get("now")
		v, err := b.DeleteVolume(r.Context(), r.PathValue("ref"), now == "1" || now == "true")
		h.reply(w, r, v, err)
	})
	h.route(mux, "POST /v1/volumes/{ref}/attach", "compute:AttachVolume", false, vol, func(w http.ResponseWriter, r *http.Request) {
		var req api.AttachVolumeRequest
		if e := decode(w, r, &req); e != nil {
			writeError(w, e)
			return
		}
		if e := h.authorizeAlso(r, "compute:AttachVolume", "instance", req.Instance); e != nil {
			writeError(w, e)
			return
		}
		v, err := b.AttachVolume(r.Context(), r.PathValue("ref"), req)
		h.reply(w, r, v, err)
	})
	h.route(mux, "POST /v1/volumes/{ref}/detach", "compute:DetachVolume", false, vol, func(w http.ResponseWriter, r *http.Request) {
		var none struct{}
		if e := decode(w, r, &none); e != nil {
			writeError(w, e)
			return
		}
		if cur, err := b.DescribeVolume(r.Context(), r.PathValue("ref")); err == nil && cur.AttachedTo != "" {
			if e := h.authorizeAlso(r, "compute:DetachVolume", "instance", cur.AttachedTo); e != nil {
				writeError(w, e)
				return
			}
		}
		v, err := b.DetachVolume(r.Context(), r.PathValue("ref"))
		h.reply(w, r, v, err)
	})
	h.route(mux, "POST /v1/volumes/{ref}/restore", "compute:RestoreVolume", false, vol, func(w http.ResponseWriter, r *http.Request) {
		var none struct{}
		if e := decode(w, r, &none); e != nil {
			writeError(w, e)
			return
		}
		v, err := b.RestoreVolume(r.Context(), r.PathValue("ref"))
		h.reply(w, r, v, err)
	})
	h.route(mux, "GET /metrics", "compute:GetHostMetrics", true, host, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if err := b.WriteMetrics(r.Context(), w); err != nil {
			h.log.Error("metrics", "err", err)
		}
		h.writeMetrics(w)
	})
	mux.HandleFunc("POST /v1/{service}/{action}", h.operation)
	mux.HandleFunc("GET /v1/audit/files/{path...}", h.auditFile)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.deny(w, r, "", "", api.Errorf(api.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

// recoverer turns a handler panic into InternalError: one bad request must
// not take the controller down.
func (h *handler) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeError(w, api.Errorf(api.CodeInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		e := api.AsError(err)
		if e.Code == api.CodeInternal {
			h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// decode reads a strict JSON body of at most api.MaxBodyBytes into v. An empty
// body is allowed when v has no required fields (the caller validates).
func decode(w http.ResponseWriter, r *http.Request, v any) *api.Error {
	body := http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(api.CodeRequestTooLarge, "request body exceeds %d bytes", api.MaxBodyBytes)
		}
		return api.Errorf(api.CodeMalformedRequest, "reading body: %v", err)
	}
	if len(data) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeMalformedRequest, "request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.Errorf(api.CodeMalformedRequest, "request body: data after the JSON value")
	}
	return nil
}

func (h *handler) runInstance(w http.ResponseWriter, r *http.Request) {
	var req api.RunInstanceRequest
	if e := decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	// Launching with a volume attaches it: the caller must be allowed to
	// attach each one, or a launch could read any volume on the host.
	var vols []string
	if req.RootVolume != "" {
		vols = append(vols, req.RootVolume)
	}
	for _, a := range req.Volumes {
		vols = append(vols, a.Volume)
	}
	for _, ref := range vols {
		if e := h.authorizeAlso(r, "compute:AttachVolume", "volume", ref); e != nil {
			writeError(w, e)
			return
		}
	}
	inst, err := h.b.RunInstance(r.Context(), req)
	h.reply(w, r, inst, err)
}

func (h *handler) describeInstance(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	var wait time.Duration
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, api.Errorf(api.CodeInvalidParameter, "after: %q is not a revision number", s))
			return
		}
		after = v
	}
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > api.MaxWait {
			writeError(w, api.Errorf(api.CodeInvalidParameter, "wait: %q is not a duration up to %v", s, api.MaxWait))
			return
		}
		wait = d
	}
	inst, err := h.b.DescribeInstance(r.Context(), r.PathValue("ref"), after, wait)
	h.reply(w, r, inst, err)
}

func (h *handler) modifyInstance(w http.ResponseWriter, r *http.Request) {
	var req api.ModifyInstanceRequest
	if e := decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	inst, err := h.b.ModifyInstance(r.Context(), r.PathValue("ref"), req)
	h.reply(w, r, inst, err)
}

func (h *handler) instanceAction(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	var inst api.Instance
	var err error
	if a := path.Base(r.URL.Path); a != "stop" {
		// These take no parameters: any field in a body is an error.
		var none struct{}
		if e := decode(w, r, &none); e != nil {
			writeError(w, e)
			return
		}
	}
	switch path.Base(r.URL.Path) {
	case "stop":
		var req api.StopInstanceRequest
		if e := decode(w, r, &req); e != nil {
			writeError(w, e)
			return
		}
		inst, err = h.b.StopInstance(r.Context(), ref, req)
	case "start":
		inst, err = h.b.StartInstance(r.Context(), ref)
	case "reboot":
		inst, err = h.b.RebootInstance(r.Context(), ref)
	case "terminate":
		inst, err = h.b.TerminateInstance(r.Context(), ref)
	}
	h.reply(w, r, inst, err)
}

func (h *handler) console(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tail := int64(64 << 10)
	if s := q.Get("tail"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			writeError(w, api.Errorf(api.CodeInvalidParameter, "tail: %q is not a byte count", s))
			return
		}
		tail = v
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	fl, _ := w.(http.Flusher)
	started := false
	sw := &startWriter{w: w, start: func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusOK)
		}
	}}
	err := h.b.Console(r.Context(), r.PathValue("ref"), tail, follow, sw, func() {
		sw.start()
		if fl != nil {
			fl.Flush()
		}
	})
	if err != nil && !started {
		h.reply(w, r, nil, err)
		return
	}
	sw.start()
}

// startWriter sends the 200 header on the first byte, so an error found
// before any output can still be reported as a JSON error.
type startWriter struct {
	w     io.Writer
	start func()
}

func (s *startWriter) Write(p []byte) (int, error) {
	s.start()
	return s.w.Write(p)
}

func (h *handler) createImage(w http.ResponseWriter, r *http.Request) {
	var req api.CreateImageRequest
	if e := decode(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	resp, err := h.b.CreateImage(r.Context(), req)
	h.reply(w, r, resp, err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	writeJSON(w, e.Status(), e)
}

// Serve serves h on l until ctx ends; with tlsConfig it serves HTTPS.
// The handler itself authenticates every request (NewHandler). Every
// request gets lim's deadlines; l gets lim's connection bounds when lim
// sets any.
func Serve(ctx context.Context, l net.Listener, h http.Handler, tlsConfig *tls.Config, lim Limits) error {
	var ll *limitListener
	if lim.MaxConns > 0 || lim.MaxConnsPerIP > 0 {
		ll = newLimitListener(l, lim)
		l = ll
	}
	srv := &http.Server{
		Handler:           withDeadlines(h, lim),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		// Streams of one connection share its per-address slot: keep
		// their number near what a client needs.
		HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: 32},
		TLSConfig: tlsConfig,
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	if ll != nil {
		srv.ConnState = ll.connState
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	var err error
	if tlsConfig != nil {
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

type connKey struct{}
