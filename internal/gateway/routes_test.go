package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
)

// TestEveryRouteIsAnOperation walks the route table: every REST route is
// an Operation with a service:Action name, a resource and an action, and
// every path of the published API (api/openapi.yaml) is in the table, so
// that nothing is served that is not authorised and audited as one.
func TestEveryRouteIsAnOperation(t *testing.T) {
	h := &handler{b: &stubBackend{}, cfg: Config{Auth: allowAll{}}, hostName: "local"}
	action := regexp.MustCompile(`^(compute|audit):[A-Z][A-Za-z]+$`)
	served := map[string]bool{"POST /v1/{service}/{action}": true}
	for _, rt := range h.table() {
		switch {
		case rt.op == nil:
			t.Errorf("%s: no Operation", rt.pattern)
			continue
		case !action.MatchString(rt.op.Name):
			t.Errorf("%s: Operation name %q is not service:Action", rt.pattern, rt.op.Name)
		case rt.op.Resource == nil || rt.op.Do == nil:
			t.Errorf("%s: %s has no Resource or no Do", rt.pattern, rt.op.Name)
		case !rt.rest:
			t.Errorf("%s: a table route must be REST (action operations come from Config.Operations)", rt.pattern)
		case rt.body == bodyJSON && rt.newBody == nil:
			t.Errorf("%s: a JSON body without a type", rt.pattern)
		}
		if served[rt.pattern] {
			t.Errorf("%s: routed twice", rt.pattern)
		}
		served[rt.pattern] = true
		method, _, _ := strings.Cut(rt.pattern, " ")
		if strings.HasPrefix(method, "GET") != rt.op.ReadOnly {
			t.Errorf("%s: %s ReadOnly %v", rt.pattern, rt.op.Name, rt.op.ReadOnly)
		}
	}
	f, err := os.Open("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pathRE := regexp.MustCompile(`^  (/\S*):$`)
	methodRE := regexp.MustCompile(`^    (get|put|post|patch|delete):$`)
	var path string
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := pathRE.FindStringSubmatch(sc.Text()); m != nil {
			path = strings.Replace(m[1], "{path}", "{path...}", 1)
		} else if m := methodRE.FindStringSubmatch(sc.Text()); m != nil && path != "" {
			n++
			if p := strings.ToUpper(m[1]) + " " + path; !served[p] {
				t.Errorf("api/openapi.yaml documents %s, which no Operation serves", p)
			}
		}
	}
	if n < 20 {
		t.Fatalf("read %d paths of api/openapi.yaml: the parser no longer fits the file", n)
	}
}

// raceBackend keeps objects by id and name as the controller does (a ref
// is an id, else a name; a deleted object keeps its id), and records the
// id of every object an action reached.
type raceBackend struct {
	stubBackend
	mu     sync.Mutex
	next   int
	names  map[string]string // kind/name → id of the live object
	ids    map[string]bool   // kind/id → exists (deleted ones too)
	acted  []string          // kind/id of what actions touched
	called int
}

func newRaceBackend() *raceBackend {
	return &raceBackend{names: map[string]string{}, ids: map[string]bool{}}
}

// make creates (or re-creates: the old one is deleted, keeping its id) the
// object of kind called name.
func (b *raceBackend) make(kind, name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := fmt.Sprintf("%s-%04d", kind[:3], b.next)
	b.names[kind+"/"+name] = id
	b.ids[kind+"/"+id] = true
	return id
}

func (b *raceBackend) lookup(kind, ref string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ids[kind+"/"+ref] {
		return ref, true
	}
	id, ok := b.names[kind+"/"+ref]
	return id, ok
}

func (b *raceBackend) ResolveID(_ context.Context, kind, ref string) (string, map[string]string, bool) {
	id, ok := b.lookup(kind, ref)
	return id, nil, ok
}

// act records the object ref names now, as the controller would find it.
func (b *raceBackend) act(kind, ref string) error {
	id, ok := b.lookup(kind, ref)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.called++
	if !ok {
		return notFound(kind, ref)
	}
	b.acted = append(b.acted, kind+"/"+id)
	return nil
}

func (b *raceBackend) TerminateInstance(_ context.Context, ref string) (api.Instance, error) {
	return api.Instance{ID: ref}, b.act(kindInstance, ref)
}
func (b *raceBackend) DescribeInstance(_ context.Context, ref string, _ uint64, _ time.Duration) (api.Instance, error) {
	return api.Instance{ID: ref}, b.act(kindInstance, ref)
}
func (b *raceBackend) DeleteVolume(_ context.Context, ref string, _ bool) (api.Volume, error) {
	return api.Volume{ID: ref}, b.act(kindVolume, ref)
}
func (b *raceBackend) DescribeVolume(_ context.Context, ref string) (api.Volume, error) {
	return api.Volume{ID: ref}, nil
}
func (b *raceBackend) AttachVolume(_ context.Context, ref string, r api.AttachVolumeRequest) (api.Volume, error) {
	if err := b.act(kindVolume, ref); err != nil {
		return api.Volume{}, err
	}
	return api.Volume{ID: ref}, b.act(kindInstance, r.Instance)
}
func (b *raceBackend) RunInstance(_ context.Context, r api.RunInstanceRequest) (api.Instance, error) {
	for _, v := range r.Volumes {
		if err := b.act(kindVolume, v.Volume); err != nil {
			return api.Instance{}, err
		}
	}
	if r.Subnet != "" {
		if err := b.act(kindSubnet, r.Subnet); err != nil {
			return api.Instance{}, err
		}
	}
	return api.Instance{ID: "i-new"}, nil
}
func (b *raceBackend) DeleteImage(_ context.Context, ref string) (string, error) {
	return ref, b.act(kindImage, ref)
}

// What is authorised is what is acted on: a name deleted and made again
// between the decision and the action (through the hook that runs between
// them) must not be acted on as the new object. The action reaches the
// object the decision was about, by its id, or nothing.
func TestAuthorisedIsActedOn(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
		remake                   [][2]string // kind, name re-created in between
	}{
		{"terminate instance", "POST", "/v1/instances/web/terminate", "", [][2]string{{kindInstance, "web"}}},
		{"describe instance", "GET", "/v1/instances/web", "", [][2]string{{kindInstance, "web"}}},
		{"delete volume", "DELETE", "/v1/volumes/data", "", [][2]string{{kindVolume, "data"}}},
		{"attach volume", "POST", "/v1/volumes/data/attach", `{"instance": "web"}`, [][2]string{{kindVolume, "data"}, {kindInstance, "web"}}},
		{"launch with volume", "POST", "/v1/instances", `{"name": "x", "image": "base", "vcpus": 1, "memory_mib": 64, "volumes": [{"volume": "data"}]}`, [][2]string{{kindVolume, "data"}}},
		{"delete image", "DELETE", "/v1/images/base", "", [][2]string{{kindImage, "base"}}},
		{"delete vpc", "DELETE", "/v1/vpcs/base", "", [][2]string{{kindVPC, "base"}}},
		{"attach network interface", "POST", "/v1/network-interfaces/data/attach", `{"instance": "web"}`, [][2]string{{kindInterface, "data"}, {kindInstance, "web"}}},
		{"launch into a subnet", "POST", "/v1/instances", `{"name": "x", "image": "base", "vcpus": 1, "memory_mib": 64, "subnet": "data"}`, [][2]string{{kindSubnet, "data"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaceBackend()
			before := map[string]string{}
			for _, k := range []string{kindInstance, kindVolume, kindImage, kindVPC, kindSubnet, kindInterface} {
				for _, n := range []string{"web", "data", "base"} {
					before[k+"/"+n] = k + "/" + b.make(k, n)
				}
			}
			after := map[string]string{}
			trail := &memTrail{}
			h := NewHandler(Config{Backend: b, Auth: allowAll{}, Audit: trail, Region: "local", afterAuthorize: func(*http.Request) {
				for _, kn := range tc.remake {
					after[kn[0]+"/"+kn[1]] = kn[0] + "/" + b.make(kn[0], kn[1])
				}
			}})
			code, out := do(t, withPeer(h), tc.method, tc.path, []byte(tc.body))
			if code != 200 {
				t.Fatalf("%s %s = %d %s", tc.method, tc.path, code, out)
			}
			if len(b.acted) == 0 {
				t.Fatal("the action reached nothing")
			}
			for _, a := range b.acted {
				for n, id := range after {
					if a == id {
						t.Errorf("acted on %s, the %s made after the decision", a, n)
					}
				}
			}
			// And what was acted on is what the record says was authorised.
			rec := trail.last()
			var arns []string
			for _, r := range rec.Resources {
				arns = append(arns, r.ARN)
			}
			for _, a := range b.acted {
				if !slices.Contains(arns, "arn:azote:compute::123456789012:"+a) {
					t.Errorf("acted on %s, authorised on %q", a, arns)
				}
			}
		})
	}

	// A name that named nothing when the call was decided is not acted on
	// when something takes it in between.
	b := newRaceBackend()
	h := NewHandler(Config{Backend: b, Auth: allowAll{}, Audit: &memTrail{}, Region: "local", afterAuthorize: func(*http.Request) {
		b.make(kindInstance, "ghost")
	}})
	code, out := do(t, withPeer(h), "POST", "/v1/instances/ghost/terminate", nil)
	if code != http.StatusNotFound || !strings.Contains(string(out), string(api.CodeInstanceNotFound)) || b.called != 0 {
		t.Errorf("terminate of a name made after the decision = %d %s, backend called %d times", code, out, b.called)
	}
}

// withPeer stands in for a root unix peer (see localHandler).
func withPeer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), testPeerKey{}, int32(1))))
	})
}
