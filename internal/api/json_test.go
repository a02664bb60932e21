package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// jsonNames lists the JSON names of t's fields, in order.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// TestPublicJSONNames pins the JSON field names of the wire types that
// azoted builds from internal structs (hostinfo, the agent's report):
// scripts read these names, and the conversion at the edge must not let
// a change inside azoted rename or drop one.
func TestPublicJSONNames(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want []string
	}{
		{HostInfo{}, []string{"cpu_model", "cores", "mem_total_mib", "mem_available_mib", "hardware_virtualization",
			"hardware_virtualization_reason", "aes_ni", "avx2", "kernel", "engine", "accel", "azoted_version"}},
		{AgentReport{}, []string{"event", "instance", "root", "init_ms", "ready_ms", "vcpus", "mem_total_kib", "mem_ram_kib", "modules", "message"}},
		{Instance{}, []string{"id", "name", "state", "state_reason", "image_id", "vcpus", "memory_mib", "termination_protection",
			"engine", "accel", "cmdline", "cmdline_sha384", "pid", "created_at", "launched_at", "ready_at", "terminated_at", "ready",
			"boot_ms", "boot_count", "agent", "volumes", "private_ip", "network_interfaces", "iam_instance_profile", "key_name",
			"user_data_sha256", "metadata_options", "ssh_host_keys", "revision", "tags"}},
		// What the net card's wiring and scripts read of the network nouns.
		{VPC{}, []string{"id", "name", "cidr", "numeric_id", "host_gateway", "default_security_group", "key_epoch", "next_key_epoch", "key_rotated_at", "tags", "created_at"}},
		{NetworkInterface{}, []string{"id", "name", "vpc_id", "subnet_id", "numeric_id", "private_ip", "mac", "security_groups", "status",
			"attachment", "interface_type", "host", "tags", "created_at"}},
		{SecurityGroupRule{}, []string{"protocol", "from_port", "to_port", "cidr", "group"}},
	} {
		typ := reflect.TypeOf(tc.v)
		if got := jsonNames(typ); !slices.Equal(got, tc.want) {
			t.Errorf("%s JSON names:\n got %q\nwant %q", typ.Name(), got, tc.want)
		}
	}
	// A filled HostInfo encodes flat, as it did when it embedded hostinfo.Info.
	raw, _ := json.Marshal(HostInfo{Cores: 2, Engine: "qemu"})
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m["cores"] != 2.0 || m["engine"] != "qemu" {
		t.Errorf("HostInfo encodes as %s", raw)
	}
}
