package api

import "testing"

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web-1", true},
		{"a", true},
		{"A.b_c-9", true},
		{"", false},
		{"-web", false},
		{"web 1", false},
		{string(make([]byte, 64)), false},
		{"i-0123456789abcdef0", false},   // an instance id
		{"vol-0123456789abcdef0", false}, // a volume id
		{"img-0123456789abcdef0", false}, // an image id
		{"i-0123456789abcdef", true},     // one digit short of an id
		{"vpc-0123456789abcdef0", false},
		{"subnet-0123456789abcdef0", false},
		{"sg-0123456789abcdef0", false},
		{"eni-0123456789abcdef0", false},
		{"default", true}, // a security group's name
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
	for _, p := range []string{InstanceIDPrefix, VolumeIDPrefix, ImageIDPrefix, VPCIDPrefix, SubnetIDPrefix, SecurityGroupIDPrefix, NetworkInterfaceIDPrefix} {
		id := NewID(p)
		if len(id) != IDLen(p) || ValidName(id) {
			t.Errorf("NewID(%q) = %q: length %d (want %d), or accepted as a name", p, id, len(id), IDLen(p))
		}
	}
}
