package cli

import (
	"context"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

var initCommand = command{use: "init", short: "create the account: root MFA, the first admin user and its key", build: initAccount, noClient: true,
	example: "azote init --admin alice --save-profile alice"}

var versionCommand = command{use: "version", short: "print the client's version, and azoted's when it is reachable", build: version, noClient: true,
	example: "azote version -o json"}

// clientVersion is the module version the binary was built from (or
// "devel"), with the VCS revision when the build recorded one.
func clientVersion() (version, revision string) {
	version = "devel"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return version, revision
}

// userAgent is what the CLI sends: azote-cli/VERSION.
func userAgent() string {
	v, _ := clientVersion()
	return "azote-cli/" + v
}

func version(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		v, rev := clientVersion()
		out := struct {
			Client   string `json:"Client"`
			Revision string `json:"Revision,omitempty"`
			Go       string `json:"Go"`
			Server   string `json:"Server,omitempty"`
			Error    string `json:"ServerError,omitempty"`
		}{Client: v, Revision: rev}
		if bi, ok := debug.ReadBuildInfo(); ok {
			out.Go = bi.GoVersion
		}
		// The server's version is a courtesy: a host that cannot be
		// reached does not make the command fail.
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := e.connect(cctx); err != nil {
			out.Error = err.Error()
		} else if h, err := e.client.HostInfo(cctx); err != nil {
			out.Error = strings.SplitN(err.Error(), "\n", 2)[0]
		} else {
			out.Server = h.Version
		}
		if e.structured() {
			return e.emit(out)
		}
		client := "azote-cli " + v
		if rev != "" {
			client += " (" + rev + ")"
		}
		server := out.Server
		if server == "" {
			server = "unreachable: " + out.Error
		}
		e.kv([][2]string{{"Client", client + ", " + out.Go}, {"Server", server}})
		return nil
	}
}

// verbs lists every verb's command path ("volume create"), for tests.
func verbs() []string {
	var out []string
	for _, n := range nouns() {
		for _, v := range n.verbs {
			out = append(out, n.name+" "+strings.Fields(v.use)[0])
		}
	}
	return append(out, "init", "version")
}
