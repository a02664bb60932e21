package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Prefix starts every line the agent writes for the host. The number is
// the version of the line format.
const Prefix = "azote-agent:1 "

// MaxLineLen bounds what the host will parse as one report line.
const MaxLineLen = 512

// Events the agent reports.
const (
	EventReady  = "ready"
	EventError  = "error"
	EventStop   = "stopping"
	EventScript = "script" // the image's script ended; Message says how
	// EventHostKey reports one of the guest's SSH host public keys at
	// boot, its Message the key as in known_hosts without the host
	// part ("ssh-ed25519 AAAA…"); the host keeps them for `azote
	// instance ssh`, as EC2 users read them from the console output.
	EventHostKey = "hostkey"
)

// Report is one agent line: an event and its measurements.
type Report struct {
	Event string `json:"event"`
	// Instance is the azote.instance= value from the kernel command line.
	Instance string `json:"instance,omitempty"`
	// Root is the device mounted as / when the root is a volume.
	Root string `json:"root,omitempty"`
	// InitMs is the time from kernel start to the agent (PID 1) starting,
	// ReadyMs from kernel start to ready, both CLOCK_BOOTTIME.
	InitMs  int64 `json:"init_ms,omitempty"`
	ReadyMs int64 `json:"ready_ms,omitempty"`
	// VCPUs is the number of online CPUs the guest sees.
	VCPUs int `json:"vcpus,omitempty"`
	// MemTotalKiB is MemTotal from /proc/meminfo; MemRAMKiB is the sum of
	// the "System RAM" ranges the firmware handed the kernel.
	MemTotalKiB int64 `json:"mem_total_kib,omitempty"`
	MemRAMKiB   int64 `json:"mem_ram_kib,omitempty"`
	// Modules is the number of kernel modules loaded.
	Modules int    `json:"modules,omitempty"`
	Message string `json:"message,omitempty"`
}

// Format renders r as one line (without newline).
func (r Report) Format() string {
	var b strings.Builder
	b.WriteString(Prefix)
	b.WriteString("event=" + r.Event)
	kv := func(k string, v int64) {
		if v != 0 {
			b.WriteString(" " + k + "=" + strconv.FormatInt(v, 10))
		}
	}
	if r.Instance != "" {
		b.WriteString(" instance=" + r.Instance)
	}
	if r.Root != "" {
		b.WriteString(" root=" + r.Root)
	}
	kv("init_ms", r.InitMs)
	kv("ready_ms", r.ReadyMs)
	kv("vcpus", int64(r.VCPUs))
	kv("mem_total_kib", r.MemTotalKiB)
	kv("mem_ram_kib", r.MemRAMKiB)
	kv("modules", int64(r.Modules))
	if r.Message != "" {
		// The message is last and runs to the end of the line; control
		// characters become spaces and it is cut so that the line stays
		// within MaxLineLen (invalid UTF-8 grows when it is replaced).
		msg := strings.Map(func(c rune) rune {
			if c < 0x20 || c == 0x7f {
				return ' '
			}
			return c
		}, strings.ToValidUTF8(r.Message, "?"))
		room := MaxLineLen - b.Len() - len(" msg=")
		if room > 0 {
			if len(msg) > room {
				msg = msg[:room]
				for !utf8.ValidString(msg) {
					msg = msg[:len(msg)-1]
				}
			}
			b.WriteString(" msg=" + msg)
		}
	}
	return b.String()
}

var errNotReport = errors.New("agent: not a report line")

// Parse reads one console line. Lines without the prefix give errNotReport;
// the prefix may be preceded by other output on the same line (a kernel
// message interleaving), since the guest console is shared.
func Parse(line string) (Report, error) {
	if len(line) > MaxLineLen {
		return Report{}, fmt.Errorf("agent: report line of %d bytes exceeds %d", len(line), MaxLineLen)
	}
	i := strings.Index(line, Prefix)
	if i < 0 {
		return Report{}, errNotReport
	}
	rest := strings.TrimRight(line[i+len(Prefix):], "\r\n")
	var r Report
	for rest != "" {
		var field string
		field, rest, _ = strings.Cut(rest, " ")
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return Report{}, fmt.Errorf("agent: malformed field %q", field)
		}
		if k == "msg" {
			r.Message = strings.TrimSpace(v + " " + rest)
			break
		}
		var err error
		switch k {
		case "event":
			r.Event, err = token(v)
		case "instance":
			r.Instance, err = token(v)
		case "root":
			r.Root, err = token(v)
		case "init_ms":
			r.InitMs, err = parseNonNeg(v)
		case "ready_ms":
			r.ReadyMs, err = parseNonNeg(v)
		case "vcpus":
			var n int64
			n, err = parseNonNeg(v)
			r.VCPUs = int(n)
		case "mem_total_kib":
			r.MemTotalKiB, err = parseNonNeg(v)
		case "mem_ram_kib":
			r.MemRAMKiB, err = parseNonNeg(v)
		case "modules":
			var n int64
			n, err = parseNonNeg(v)
			r.Modules = int(n)
		default:
			// Unknown keys come from newer agents; skip them.
		}
		if err != nil {
			return Report{}, fmt.Errorf("agent: field %s: %w", k, err)
		}
	}
	if r.Event == "" {
		return Report{}, errors.New("agent: report without event")
	}
	return r, nil
}

// IsReport tells whether line carries the agent prefix at all.
func IsReport(line string) bool { return strings.Contains(line, Prefix) }

// token accepts a text field value: printable, no control characters
// (a stray carriage return would vanish when the line is written again).
func token(s string) (string, error) {
	for _, c := range s {
		if c < 0x21 || c == 0x7f || c == utf8.RuneError {
			return "", fmt.Errorf("value %q has a control or invalid character", s)
		}
	}
	return s, nil
}

func parseNonNeg(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > 1<<40 {
		return 0, fmt.Errorf("value %d out of range", n)
	}
	return n, nil
}
