package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/azote/azote/internal/api"
)

var hostCommands = []command{
	{use: "info", short: "show the host's CPU, memory, virtualization and engine", build: hostInfo,
		example: "azote host info -o json --query .HardwareVirt"},
	{use: "metrics", short: "print azoted's Prometheus metrics (-o json: one object per sample)", build: hostMetrics,
		example: "azote host metrics -o json --query '.[] | select(.Name == \"azote_instances\")'"},
	{use: "identity-key", short: "print the public key (PEM) that signs instance identity documents", build: hostIdentityKey, textOnly: true,
		example: "azote host identity-key > identity-key.pem"},
}

func hostInfo(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.HostInfo, error) {
		return e.client.HostInfo(ctx)
	}, showHost)
}

func showHost(e *env, h api.HostInfo) error {
	if e.structured() {
		return e.emit(h)
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	e.kv([][2]string{
		{"CPU", h.CPUModel},
		{"Cores", fmt.Sprint(h.Cores)},
		{"Memory", fmt.Sprintf("%d MiB total, %d MiB available", h.MemTotalMiB, h.MemAvailMiB)},
		{"Hardware virtualization", yes(h.HardwareVirt) + " (" + h.VirtReason + ")"},
		{"AES-NI", yes(h.AESNI)},
		{"AVX2", yes(h.AVX2)},
		{"Kernel", h.Kernel},
		{"Engine", h.Engine + " (accel " + h.Accel + ")"},
		{"azoted", h.Version},
	})
	return nil
}

func hostMetrics(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		m, err := e.client.Metrics(ctx)
		if err != nil {
			return err
		}
		if e.structured() {
			samples, err := parseMetrics(m)
			if err != nil {
				return err
			}
			return e.emit(samples)
		}
		_, err = io.WriteString(e.stdout, m)
		return err
	}
}

// sample is one line of the Prometheus text format.
type sample struct {
	Name   string            `json:"Name"`
	Labels map[string]string `json:"Labels,omitempty"`
	Value  promValue         `json:"Value"`
}

// promValue is a sample's value; NaN and ±Inf, which JSON cannot
// carry as numbers, are written as Prometheus writes them ("NaN", "+Inf").
type promValue float64

func (v promValue) MarshalJSON() ([]byte, error) {
	f := float64(v)
	switch {
	case math.IsNaN(f):
		return []byte(`"NaN"`), nil
	case math.IsInf(f, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(f)
}

// parseMetrics reads the Prometheus text exposition format (comments,
// name{label="value",...} value [timestamp]).
func parseMetrics(text string) ([]sample, error) {
	out := []sample{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var s sample
		rest := line
		if i := strings.IndexAny(rest, "{ "); i < 0 {
			return nil, fmt.Errorf("metrics line %d: no value", n)
		} else {
			s.Name, rest = rest[:i], rest[i:]
		}
		if strings.HasPrefix(rest, "{") {
			s.Labels = map[string]string{}
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, " ,")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				k, v, ok := strings.Cut(rest, "=")
				if !ok || !strings.HasPrefix(v, `"`) {
					return nil, fmt.Errorf("metrics line %d: bad label", n)
				}
				val, tail, err := quotedPrefix(v)
				if err != nil {
					return nil, fmt.Errorf("metrics line %d: %v", n, err)
				}
				s.Labels[strings.TrimSpace(k)] = val
				rest = tail
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics line %d: no value", n)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %v", n, err)
		}
		s.Value = promValue(v)
		out = append(out, s)
	}
	return out, sc.Err()
}

// quotedPrefix reads a label value ("..." with \\, \" and \n escapes).
func quotedPrefix(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 >= len(s) {
				return "", "", fmt.Errorf("unterminated label value")
			}
			i++
			if s[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated label value")
}
