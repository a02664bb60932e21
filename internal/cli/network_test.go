package cli

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/azote/azote/internal/api"
)

// fakeAzoted records each request (method, path and query, body) and
// answers {} (or [] for a list).
type fakeAzoted struct {
	sock string
	mu   sync.Mutex
	got  []string
}

func newFakeAzoted(t *testing.T) *fakeAzoted {
	f := &fakeAzoted{sock: filepath.Join(t.TempDir(), "s")}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(body)))
		f.mu.Unlock()
		if r.Method == "GET" && strings.Count(r.URL.Path, "/") == 2 {
			w.Write([]byte("[]"))
			return
		}
		w.Write([]byte("{}"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeAzoted) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.got
	f.got = nil
	return g
}

func localOnly(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AZOTE_PROFILE", "AWS_ENDPOINT_URL", "AZOTE_ENDPOINT"} {
		t.Setenv(v, "")
	}
}

// Each network verb sends what its flags say, to the route that serves
// it.
func TestNetworkVerbsSend(t *testing.T) {
	localOnly(t)
	f := newFakeAzoted(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vpc", "create", "--cidr", "10.0.0.0/16", "--name", "prod", "--host-gateway", "--tag", "env=dev"},
			`POST /v1/vpcs {"name":"prod","cidr":"10.0.0.0/16","host_gateway":true,"tags":{"env":"dev"}}`},
		{[]string{"vpc", "modify", "prod", "--host-gateway=false"}, `PATCH /v1/vpcs/prod {"host_gateway":false}`},
		{[]string{"vpc", "rotate-key", "prod"}, `POST /v1/vpcs/prod/rotate-key`},
		{[]string{"vpc", "delete", "prod"}, `DELETE /v1/vpcs/prod`},
		{[]string{"subnet", "create", "--vpc", "prod", "--cidr", "10.0.1.0/24"}, `POST /v1/subnets {"vpc":"prod","cidr":"10.0.1.0/24"}`},
		{[]string{"subnet", "list", "--vpc", "prod"}, `GET /v1/subnets?vpc=prod`},
		{[]string{"security-group", "list"}, `GET /v1/security-groups`},
		{[]string{"security-group", "create", "--vpc", "prod", "--name", "web", "--description", "web servers"},
			`POST /v1/security-groups {"vpc":"prod","name":"web","description":"web servers"}`},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "tcp", "--port", "22", "--cidr", "0.0.0.0/0"},
			`POST /v1/security-groups/web/authorize-ingress {"rules":[{"protocol":"tcp","from_port":22,"to_port":22,"cidr":"0.0.0.0/0"}]}`},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "udp", "--port", "1000-2000", "--source-group", "sg-0123456789abcdef0"},
			`POST /v1/security-groups/web/authorize-ingress {"rules":[{"protocol":"udp","from_port":1000,"to_port":2000,"group":"sg-0123456789abcdef0"}]}`},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "tcp", "--cidr", "10.0.0.0/8"},
			`POST /v1/security-groups/web/authorize-ingress {"rules":[{"protocol":"tcp","from_port":0,"to_port":65535,"cidr":"10.0.0.0/8"}]}`},
		{[]string{"security-group", "authorize-egress", "db", "--protocol", "icmp", "--icmp-type", "8", "--destination-group", "web"},
			`POST /v1/security-groups/db/authorize-egress {"rules":[{"protocol":"icmp","from_port":8,"to_port":-1,"group":"web"}]}`},
		{[]string{"security-group", "revoke-egress", "db", "--protocol", "all", "--cidr", "0.0.0.0/0"},
			`POST /v1/security-groups/db/revoke-egress {"rules":[{"protocol":"all","from_port":-1,"to_port":-1,"cidr":"0.0.0.0/0"}]}`},
		{[]string{"network-interface", "create", "--subnet", "front", "--security-group", "web", "--security-group", "db", "--private-ip", "10.0.1.20"},
			`POST /v1/network-interfaces {"subnet":"front","security_groups":["web","db"],"private_ip":"10.0.1.20"}`},
		{[]string{"network-interface", "attach", "eni-1", "--instance", "web", "--device-index", "2"},
			`POST /v1/network-interfaces/eni-1/attach {"instance":"web","device_index":2}`},
		{[]string{"network-interface", "attach", "eni-1", "--instance", "web"}, `POST /v1/network-interfaces/eni-1/attach {"instance":"web"}`},
		{[]string{"network-interface", "detach", "eni-1"}, `POST /v1/network-interfaces/eni-1/detach`},
		{[]string{"instance", "run", "--name", "web", "--subnet", "front", "--security-group", "web", "--private-ip", "10.0.1.9", "--no-wait"},
			`POST /v1/instances {"name":"web","image":"default","vcpus":1,"memory_mib":256,"subnet":"front","security_groups":["web"],"private_ip":"10.0.1.9"}`},
	} {
		code, _, errs := runArgs(append(tc.args, "--socket", f.sock, "-o", "json")...)
		got := f.take()
		if code != 0 || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%q: exit %d %s\n sent %q\n want %q", tc.args, code, errs, got, tc.want)
		}
	}
}

// Mistakes in a rule or a launch's network flags are the command line's
// (exit 2), caught before anything is sent.
func TestNetworkUsageErrors(t *testing.T) {
	localOnly(t)
	f := newFakeAzoted(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vpc", "create"}, "--cidr is required"},
		{[]string{"vpc", "modify", "prod"}, "nothing to change"},
		{[]string{"subnet", "create", "--vpc", "prod"}, "--vpc and --cidr are required"},
		{[]string{"security-group", "create", "--vpc", "prod"}, "--vpc and --name are required"},
		{[]string{"security-group", "authorize-ingress", "web", "--port", "22", "--cidr", "0.0.0.0/0"}, "--protocol is required"},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "tcp", "--port", "22"}, "give --cidr or --source-group"},
		{[]string{"security-group", "authorize-egress", "web", "--protocol", "tcp", "--cidr", "0.0.0.0/0", "--destination-group", "db"}, "give --cidr or --destination-group"},
		{[]string{"security-group", "authorize-egress", "web", "--protocol", "tcp", "--source-group", "db"}, "unknown flag: --source-group"},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "tcp", "--port", "2000-1000", "--cidr", "0.0.0.0/0"}, "want a port (22) or a range"},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "tcp", "--port", "http", "--cidr", "0.0.0.0/0"}, "want a port (22) or a range"},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "icmp", "--port", "8", "--cidr", "0.0.0.0/0"}, "icmp has no ports"},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "tcp", "--icmp-type", "8", "--cidr", "0.0.0.0/0"}, "are for --protocol icmp"},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "all", "--port", "80", "--cidr", "0.0.0.0/0"}, "protocol all has no ports"},
		{[]string{"security-group", "authorize-ingress", "web", "--protocol", "gre", "--cidr", "0.0.0.0/0"}, `--protocol "gre"`},
		{[]string{"network-interface", "create"}, "--subnet is required"},
		{[]string{"network-interface", "attach", "eni-1"}, "--instance is required"},
		{[]string{"instance", "run", "--private-ip", "10.0.1.9"}, "give --subnet too"},
	} {
		code, out, errs := runArgs(append(tc.args, "--socket", f.sock)...)
		if code != 2 || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errs, tc.want)
		}
	}
	if got := f.take(); len(got) != 0 {
		t.Errorf("usage errors sent %q", got)
	}
}

// A group's rules read as people write them.
func TestShowGroup(t *testing.T) {
	var out strings.Builder
	e := &env{stdout: &out, output: "table"}
	g := api.SecurityGroup{ID: "sg-1", Name: "web", VPCID: "vpc-1",
		Ingress: []api.SecurityGroupRule{
			{Protocol: "tcp", FromPort: 22, ToPort: 22, CIDR: "0.0.0.0/0"},
			{Protocol: "udp", FromPort: 1000, ToPort: 2000, Group: "sg-2"},
			{Protocol: "icmp", FromPort: 8, ToPort: -1, CIDR: "10.0.0.0/8"},
		},
	}
	showGroup(e, g)
	for _, want := range []string{"Ingress:  tcp 22 0.0.0.0/0\n", "          udp 1000-2000 group sg-2\n", "          icmp type 8 10.0.0.0/8\n",
		"Egress:   none (nothing may go out)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
	out.Reset()
	e.output = "json"
	showGroup(e, g)
	var back api.SecurityGroup
	if err := json.Unmarshal([]byte(out.String()), &back); err != nil || len(back.Ingress) != 3 {
		t.Errorf("json: %v %s", err, out.String())
	}
}
