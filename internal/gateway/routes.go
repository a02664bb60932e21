package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/azote/azote/internal/api"
)

// Backend is what the gateway serves; the controller implements it.
// Errors returned as *api.Error keep their code; any other error becomes
// InternalError. Every ref a method takes is the id the gateway resolved
// and authorised (ResolveID), never a name looked up again.
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
	// ImportVolume makes a volume from the raw disk body, which it
	// passes to the fill card without keeping it.
	ImportVolume(ctx context.Context, r api.ImportVolumeRequest, body io.Reader) (api.Volume, error)
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
	// (instance, volume, image, vpc, subnet, security-group,
	// network-interface) into its id and tags; ok is false when there is
	// no such object.
	ResolveID(ctx context.Context, kind, ref string) (id string, tags map[string]string, ok bool)

	NetworkBackend
	KeyPairBackend
}

// Kinds of the objects a REST route's {ref} names.
const (
	kindInstance = "instance"
	kindVolume   = "volume"
	kindImage    = "image"
)

// body says what a REST route reads of the request body.
type body int

const (
	bodyIgnored body = iota // not read (GET, DELETE)
	bodyEmpty               // no parameters: any field is an error
	bodyJSON                // route.newBody's type, decoded strictly
	bodyRaw                 // read by the operation itself (blob upload)
)

// route is one entry of the route table: a pattern and the Operation it
// is. A REST route's Operation takes a *restCall as its request; the
// action route (POST /v1/{service}/{action}) finds its Operation by name.
type route struct {
	pattern string
	op      *api.Operation
	// rest routes name their resource in the path and are authorised
	// before their body is read; action operations name it in the body.
	rest    bool
	body    body
	newBody func() any
	// stream routes (console) are audited before the first byte and
	// answer as they go.
	stream bool
	// params, when set, is what the trail keeps of the request instead
	// of the whole body (exec keeps its input out).
	params func(*restCall) map[string]any
}

// restCall is the request of a REST route's Operation as it goes through
// the pipeline.
type restCall struct {
	r    *http.Request
	w    http.ResponseWriter
	kind string
	// ref is the path's {ref}; id is what it resolved to when the call
	// was authorised (found false when nothing had it). The backend is
	// handed id, never ref: a name deleted and made again between the
	// decision and the action must not be acted on as another object
	// than the one the decision was about.
	ref   string
	id    string
	found bool
	body  any
	// alsoErr is the answer for a further object that does not exist,
	// given once the call is authorised on every object it names.
	alsoErr error
	// started is set once a stream has begun its answer.
	started bool
}

// target is the id the call was authorised on, or the kind's NotFound.
func (c *restCall) target() (string, error) {
	if !c.found {
		return "", notFound(c.kind, c.ref)
	}
	return c.id, nil
}

// notFound is the answer for a ref that names nothing, in the words the
// controller uses for the same.
func notFound(kind, ref string) error {
	code := map[string]api.Code{kindInstance: api.CodeInstanceNotFound, kindVolume: api.CodeVolumeNotFound, kindImage: api.CodeImageNotFound,
		kindVPC: api.CodeVPCNotFound, kindSubnet: api.CodeSubnetNotFound, kindGroup: api.CodeSecurityGroupNotFound,
		kindInterface: api.CodeNetworkInterfaceNotFound, kindKeyPair: api.CodeKeyPairNotFound}[kind]
	if kind == kindGroup {
		return api.Errorf(code, "no security group %q, or more than one VPC has a group of that name (give its id)", ref)
	}
	return api.Errorf(code, "no %s %q", kind, ref)
}

// rawResult is a result that is not JSON (metrics, audit files).
type rawResult struct {
	contentType string
	data        []byte
}

// streamed is the result of a route that wrote its answer itself.
type streamed struct{}

func rc(req any) *restCall { return req.(*restCall) }

// resolve authorises a call on the object its {ref} names: the id is
// resolved once, here, and kept for the action; the object's tags answer
// aws:ResourceTag/KEY conditions.
func (h *handler) resolve(kind string) func(context.Context, any) (string, error) {
	return func(ctx context.Context, req any) (string, error) {
		c := rc(req)
		c.kind, c.ref = kind, c.r.PathValue("ref")
		id, tags, ok := h.b.ResolveID(ctx, kind, c.ref)
		if !ok {
			id, tags = c.ref, nil
		}
		c.id, c.found = id, ok
		info(c.r).tags = tags
		return h.arn("compute", kind+"/"+id), nil
	}
}

// also resolves a further object a call acts on (the instance a volume is
// attached to, the volumes an instance is launched with) to its ARN,
// keeping its tags for the decision; the id is returned for the action.
func (h *handler) also(ctx context.Context, r *http.Request, kind, ref string) (arn, id string, err error) {
	id, tags, ok := h.b.ResolveID(ctx, kind, ref)
	if !ok {
		id, tags = ref, nil
	}
	arn = h.arn("compute", kind+"/"+id)
	ri := info(r)
	if ri.alsoTags == nil {
		ri.alsoTags = map[string]map[string]string{}
	}
	ri.alsoTags[arn] = tags
	if !ok {
		// Authorised on its ARN all the same (the caller learns nothing
		// a policy would hide), then answered NotFound.
		return arn, "", nil
	}
	return arn, id, nil
}

// table is every route the gateway serves. Nothing is routed that is not
// in it, and every entry is an Operation (TestEveryRouteIsAnOperation).
func (h *handler) table() []*route {
	b := h.b
	star := func(context.Context, any) (string, error) { return "*", nil }
	of := func(resource string) func(context.Context, any) (string, error) {
		return func(context.Context, any) (string, error) { return h.arn("compute", resource), nil }
	}
	host := func(context.Context, any) (string, error) { return h.arn("compute", "host/"+h.hostName), nil }
	inst, vol, img := h.resolve(kindInstance), h.resolve(kindVolume), h.resolve(kindImage)
	rest := func(pattern string, bd body, op *api.Operation) *route {
		return &route{pattern: pattern, op: op, rest: true, body: bd}
	}
	restJSON := func(pattern string, newBody func() any, op *api.Operation) *route {
		return &route{pattern: pattern, op: op, rest: true, body: bodyJSON, newBody: newBody}
	}
	// onInstance runs an instance action on the authorised id.
	onInstance := func(fn func(ctx context.Context, id string, c *restCall) (api.Instance, error)) func(context.Context, *api.Caller, any) (any, error) {
		return func(ctx context.Context, _ *api.Caller, req any) (any, error) {
			id, err := rc(req).target()
			if err != nil {
				return nil, err
			}
			return fn(ctx, id, rc(req))
		}
	}
	onVolume := func(fn func(ctx context.Context, id string, c *restCall) (api.Volume, error)) func(context.Context, *api.Caller, any) (any, error) {
		return func(ctx context.Context, _ *api.Caller, req any) (any, error) {
			id, err := rc(req).target()
			if err != nil {
				return nil, err
			}
			return fn(ctx, id, rc(req))
		}
	}
	return append([]*route{
		rest("GET /v1/host", bodyIgnored, &api.Operation{Name: "compute:DescribeHost", ReadOnly: true, Resource: host,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) { return b.HostInfo(ctx), nil }}),

		restJSON("POST /v1/instances", newOf[api.RunInstanceRequest], &api.Operation{Name: "compute:RunInstances",
			Resource: of("instance/*"), Conditions: h.bodyKeys(runInstanceKeys),
			// Launching with a volume attaches it: the caller must be
			// allowed to attach each one, or a launch could read any
			// volume on the host.
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				q := c.body.(*api.RunInstanceRequest)
				var arns []string
				var err error
				add := func(ref *string) {
					arn, id, e := h.also(ctx, c.r, kindVolume, *ref)
					arns = append(arns, arn)
					if e == nil && id == "" && err == nil {
						err = notFound(kindVolume, *ref)
					}
					if id != "" {
						*ref = id
					}
				}
				if q.RootVolume != "" {
					add(&q.RootVolume)
				}
				for i := range q.Volumes {
					add(&q.Volumes[i].Volume)
				}
				c.alsoErr = err
				arns = append(arns, h.runNetworkAlso(ctx, c, q)...)
				arns = append(arns, h.runProfileAlso(c, q)...)
				return append(arns, h.runKeyPairAlso(ctx, c, q)...), nil
			}, AlsoAction: "compute:AttachVolume", AlsoActionOf: h.runAlsoAction,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				if err := rc(req).alsoErr; err != nil {
					return nil, err
				}
				return b.RunInstance(ctx, *rc(req).body.(*api.RunInstanceRequest))
			}}),
		rest("GET /v1/instances", bodyIgnored, &api.Operation{Name: "compute:DescribeInstances", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) { return b.ListInstances(ctx) }}),
		rest("GET /v1/instances/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeInstances", ReadOnly: true, Resource: inst,
			Do: onInstance(h.describeInstance)}),
		restJSON("PATCH /v1/instances/{ref}", newOf[api.ModifyInstanceRequest], &api.Operation{Name: "compute:ModifyInstanceAttribute", Resource: inst,
			Do: onInstance(func(ctx context.Context, id string, c *restCall) (api.Instance, error) {
				return b.ModifyInstance(ctx, id, *c.body.(*api.ModifyInstanceRequest))
			})}),
		restJSON("POST /v1/instances/{ref}/stop", newOf[api.StopInstanceRequest], &api.Operation{Name: "compute:StopInstances", Resource: inst,
			Do: onInstance(func(ctx context.Context, id string, c *restCall) (api.Instance, error) {
				return b.StopInstance(ctx, id, *c.body.(*api.StopInstanceRequest))
			})}),
		rest("POST /v1/instances/{ref}/start", bodyEmpty, &api.Operation{Name: "compute:StartInstances", Resource: inst,
			Do: onInstance(func(ctx context.Context, id string, _ *restCall) (api.Instance, error) {
				return b.StartInstance(ctx, id)
			})}),
		rest("POST /v1/instances/{ref}/reboot", bodyEmpty, &api.Operation{Name: "compute:RebootInstances", Resource: inst,
			Do: onInstance(func(ctx context.Context, id string, _ *restCall) (api.Instance, error) {
				return b.RebootInstance(ctx, id)
			})}),
		rest("POST /v1/instances/{ref}/terminate", bodyEmpty, &api.Operation{Name: "compute:TerminateInstances", Resource: inst,
			Do: onInstance(func(ctx context.Context, id string, _ *restCall) (api.Instance, error) {
				return b.TerminateInstance(ctx, id)
			})}),
		{pattern: "GET /v1/instances/{ref}/console", rest: true, stream: true, op: &api.Operation{Name: "compute:GetConsoleOutput", ReadOnly: true, Resource: inst,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				id, err := rc(req).target()
				if err != nil {
					return nil, err
				}
				return h.console(ctx, id, rc(req))
			}}},
		h.execRoute(inst),

		rest("PUT /v1/blobs/{digest}", bodyRaw, &api.Operation{Name: "compute:PutImageBlob", Resource: of("image/*"),
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				d := rc(req).r.PathValue("digest")
				return blobResult{SHA384: d}, b.PutBlob(ctx, d, rc(req).r.Body)
			}}),
		restJSON("POST /v1/images", newOf[api.CreateImageRequest], &api.Operation{Name: "compute:CreateImage", Resource: of("image/*"),
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				return b.CreateImage(ctx, *rc(req).body.(*api.CreateImageRequest))
			}}),
		rest("GET /v1/images", bodyIgnored, &api.Operation{Name: "compute:DescribeImages", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) { return b.ListImages(ctx) }}),
		rest("GET /v1/images/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeImages", ReadOnly: true, Resource: img,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				id, err := rc(req).target()
				if err != nil {
					return nil, err
				}
				return b.DescribeImage(ctx, id)
			}}),
		rest("DELETE /v1/images/{ref}", bodyIgnored, &api.Operation{Name: "compute:DeleteImage", Resource: img,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				id, err := rc(req).target()
				if err != nil {
					return nil, err
				}
				id, err = b.DeleteImage(ctx, id)
				return deletedResult{Deleted: id}, err
			}}),

		restJSON("POST /v1/volumes", newOf[api.CreateVolumeRequest], &api.Operation{Name: "compute:CreateVolume",
			Resource: of("volume/*"), Conditions: h.bodyKeys(createVolumeKeys),
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				return b.CreateVolume(ctx, *rc(req).body.(*api.CreateVolumeRequest))
			}}),
		h.importVolumeRoute(),
		rest("GET /v1/volumes", bodyIgnored, &api.Operation{Name: "compute:DescribeVolumes", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) { return b.ListVolumes(ctx) }}),
		rest("GET /v1/volumes/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeVolumes", ReadOnly: true, Resource: vol,
			Do: onVolume(func(ctx context.Context, id string, _ *restCall) (api.Volume, error) {
				return b.DescribeVolume(ctx, id)
			})}),
		restJSON("PATCH /v1/volumes/{ref}", newOf[api.ModifyVolumeRequest], &api.Operation{Name: "compute:ModifyVolume", Resource: vol,
			Do: onVolume(func(ctx context.Context, id string, c *restCall) (api.Volume, error) {
				return b.ModifyVolume(ctx, id, *c.body.(*api.ModifyVolumeRequest))
			})}),
		rest("DELETE /v1/volumes/{ref}", bodyIgnored, &api.Operation{Name: "compute:DeleteVolume", Resource: vol,
			Do: onVolume(func(ctx context.Context, id string, c *restCall) (api.Volume, error) {
				now := c.r.URL.Query().Get("now")
				return b.DeleteVolume(ctx, id, now == "1" || now == "true")
			})}),
		restJSON("POST /v1/volumes/{ref}/attach", newOf[api.AttachVolumeRequest], &api.Operation{Name: "compute:AttachVolume", Resource: vol,
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				q := c.body.(*api.AttachVolumeRequest)
				arn, id, _ := h.also(ctx, c.r, kindInstance, q.Instance)
				if id == "" {
					c.alsoErr = notFound(kindInstance, q.Instance)
				}
				q.Instance = id
				return []string{arn}, nil
			},
			Do: onVolume(func(ctx context.Context, id string, c *restCall) (api.Volume, error) {
				if c.alsoErr != nil {
					return api.Volume{}, c.alsoErr
				}
				return b.AttachVolume(ctx, id, *c.body.(*api.AttachVolumeRequest))
			})}),
		rest("POST /v1/volumes/{ref}/detach", bodyEmpty, &api.Operation{Name: "compute:DetachVolume", Resource: vol,
			// Detaching acts on the instance too.
			Also: func(ctx context.Context, req any) ([]string, error) {
				c := rc(req)
				if !c.found {
					return nil, nil
				}
				cur, err := b.DescribeVolume(ctx, c.id)
				if err != nil || cur.AttachedTo == "" {
					return nil, nil
				}
				arn, _, _ := h.also(ctx, c.r, kindInstance, cur.AttachedTo)
				return []string{arn}, nil
			},
			Do: onVolume(func(ctx context.Context, id string, _ *restCall) (api.Volume, error) { return b.DetachVolume(ctx, id) })}),
		rest("POST /v1/volumes/{ref}/restore", bodyEmpty, &api.Operation{Name: "compute:RestoreVolume", Resource: vol,
			Do: onVolume(func(ctx context.Context, id string, _ *restCall) (api.Volume, error) { return b.RestoreVolume(ctx, id) })}),

		rest("GET /metrics", bodyIgnored, &api.Operation{Name: "compute:GetHostMetrics", ReadOnly: true, Resource: host,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) {
				var buf bytes.Buffer
				if err := b.WriteMetrics(ctx, &buf); err != nil {
					h.log.Error("metrics", "err", err)
				}
				h.writeMetrics(&buf)
				return rawResult{contentType: "text/plain; version=0.0.4", data: buf.Bytes()}, nil
			}}),
		// Collectors fetch the trail's files one by one.
		rest("GET /v1/audit/files/{path...}", bodyIgnored, &api.Operation{Name: "audit:GetLogFile", ReadOnly: true,
			Resource: func(context.Context, any) (string, error) { return h.arn("audit", "trail/default"), nil },
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				if h.cfg.Files == nil {
					return nil, api.Errorf(api.CodeNotFound, "no audit trail")
				}
				data, err := h.cfg.Files(ctx, rc(req).r.PathValue("path"))
				if err != nil {
					return nil, err
				}
				return rawResult{contentType: "application/octet-stream", data: data}, nil
			}}),
	}, append(h.networkRoutes(), h.keyPairRoutes()...)...)
}

// blobResult and deletedResult are the answers of a blob upload and an
// image deletion.
type blobResult struct {
	SHA384 string `json:"sha384"`
}

type deletedResult struct {
	Deleted string `json:"deleted"`
}

func newOf[T any]() any { return new(T) }

// bodyKeys peeks at a create call's body before it is authorised, for the
// request condition keys that keys derives from it (the body is put back
// for the decoder, which decodes it strictly). A body that does not parse
// adds no keys: the decoder refuses it. Keys that make the context
// ambiguous refuse the call before any decision.
func (h *handler) bodyKeys(keys func(body []byte) (map[string][]string, *api.Error)) func(context.Context, any) map[string][]string {
	return func(_ context.Context, req any) map[string][]string {
		r := rc(req).r
		data, err := io.ReadAll(io.LimitReader(r.Body, api.MaxBodyBytes+1))
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(data), r.Body), r.Body}
		if err != nil || len(data) > api.MaxBodyBytes {
			return nil
		}
		conds, bad := keys(data)
		info(r).bad = bad
		return conds
	}
}

func (h *handler) describeInstance(ctx context.Context, id string, c *restCall) (api.Instance, error) {
	q := c.r.URL.Query()
	var after uint64
	var wait time.Duration
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return api.Instance{}, api.Errorf(api.CodeInvalidParameter, "after: %q is not a revision number", s)
		}
		after = v
	}
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > api.MaxWait {
			return api.Instance{}, api.Errorf(api.CodeInvalidParameter, "wait: %q is not a duration up to %v", s, api.MaxWait)
		}
		wait = d
	}
	return h.b.DescribeInstance(ctx, id, after, wait)
}

// console streams the console of instance id. An error found before the
// first byte is returned, to be answered as JSON; once output has begun
// the answer is the output.
func (h *handler) console(ctx context.Context, id string, c *restCall) (any, error) {
	q := c.r.URL.Query()
	tail := int64(64 << 10)
	if s := q.Get("tail"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return nil, api.Errorf(api.CodeInvalidParameter, "tail: %q is not a byte count", s)
		}
		tail = v
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	w := c.w
	fl, _ := w.(http.Flusher)
	started := false
	sw := &startWriter{w: w, start: func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusOK)
		}
	}}
	err := h.b.Console(ctx, id, tail, follow, sw, func() {
		sw.start()
		if fl != nil {
			fl.Flush()
		}
	})
	if err != nil && !started {
		return nil, err
	}
	sw.start()
	return streamed{}, nil
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

// summarize keeps the identifying fields of a REST call's result for its
// audit record, from the typed result (never from the response text).
func summarize(out any) map[string]any {
	switch v := out.(type) {
	case api.Instance:
		return map[string]any{"id": v.ID, "name": v.Name, "state": v.State, "image_id": v.ImageID}
	case api.Volume:
		return map[string]any{"id": v.ID, "name": v.Name, "state": v.State, "kind": v.Kind, "size_bytes": v.SizeBytes}
	case blobResult:
		return map[string]any{"sha384": v.SHA384}
	case deletedResult:
		return map[string]any{"deleted": v.Deleted}
	}
	if m, ok := summarizeKeyPair(out); ok {
		return m
	}
	return summarizeNetwork(out)
}
