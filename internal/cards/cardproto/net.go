package cardproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/azote/azote/internal/keymem"
)

// KindNet serves one virtio-net interface over vhost-user.
const KindNet = "net"

// Descriptors only a net card inherits.
const (
	FDUnderlay = "underlay" // the bound UDP socket of the underlay, kept by azoted across restarts
	FDControl  = "control"  // a listening socket on which azoted pushes a new NetState
	// FDTap is a tap device (IFF_TAP|IFF_NO_PI) azoted made: the host
	// gateway's interface, served in place of a vhost-user guest.
	FDTap = "tap"
)

// NetConfig is what azoted sends a net card at start: the interface, and
// the state of its VPC. Its keys follow on the channel, one message each,
// in the order of State.KeyEpochs, then State.NextKeyEpoch's.
type NetConfig struct {
	InterfaceID string `json:"interface_id"`
	VPCID       string `json:"vpc_id"`
	MAC         string `json:"mac"`
	Pairs       int    `json:"pairs"`
	MTU         int    `json:"mtu"`
	// PacketsPerSecond and BitsPerSecond bound what the interface sends
	// and receives (0: no bound).
	PacketsPerSecond int64 `json:"packets_per_second,omitempty"`
	BitsPerSecond    int64 `json:"bits_per_second,omitempty"`
	// Plaintext carries frames over the underlay unencrypted and
	// unauthenticated (encap's FlagPlaintext): the baseline of the
	// benchmark (bench/net) and of tests, never set by azoted. A card
	// refuses it unless its command line also says --allow-plaintext.
	Plaintext bool     `json:"plaintext,omitempty"`
	State     NetState `json:"state"`
}

// NetState is what a card knows of its VPC; azoted sends it whole, at
// start and on every change (on the control socket), with the keys.
type NetState struct {
	VPCIndex   uint32    `json:"vpc_index"`
	VPCCIDR    string    `json:"vpc_cidr"`
	Self       NetPeer   `json:"self"`
	Gateway    string    `json:"gateway"`
	GatewayMAC string    `json:"gateway_mac"`
	DNS        []string  `json:"dns,omitempty"`
	Peers      []NetPeer `json:"peers"`
	Ingress    []NetRule `json:"ingress"`
	Egress     []NetRule `json:"egress"`
	// KeyEpochs are the epochs of the VPC keys that follow: the current
	// one (to seal with) first, then the previous one (still opened)
	// when there is one.
	KeyEpochs []uint32 `json:"key_epochs"`
	// NextKeyEpoch, when not 0, is the epoch of one more key, after
	// those: a rotation's next epoch, which the card opens but does not
	// seal with until a later state makes it current (docs/network.md,
	// "Key rotation").
	NextKeyEpoch uint32 `json:"next_key_epoch,omitempty"`
	// Metadata is what the card's metadata service answers; nil when the
	// interface is attached to no instance (the service then answers
	// nothing and the address is not reachable).
	Metadata *NetMetadata `json:"metadata,omitempty"`
}

// KeyCount is how many keys follow the state: KeyEpochs, and one more
// for NextKeyEpoch.
func (st *NetState) KeyCount() int {
	n := len(st.KeyEpochs)
	if st.NextKeyEpoch != 0 {
		n++
	}
	return n
}

// NetPeer is one interface of the VPC.
type NetPeer struct {
	Index    uint32   `json:"index"`
	IP       string   `json:"ip"`
	MAC      string   `json:"mac"`
	Subnet   string   `json:"subnet"`
	Underlay string   `json:"underlay"` // host:port of the card serving it
	Groups   []string `json:"groups,omitempty"`
}

// NetRule is one security group rule: Protocol tcp, udp, icmp or all;
// ports (ICMP: type and code, -1 for any); a CIDR or a group.
type NetRule struct {
	Protocol string `json:"protocol"`
	FromPort int    `json:"from_port"`
	ToPort   int    `json:"to_port"`
	CIDR     string `json:"cidr,omitempty"`
	Group    string `json:"group,omitempty"`
}

// MaxNetKeys bounds the keys one message carries: previous, current and
// next.
const MaxNetKeys = 3

// NetKeyBytes is the length of a VPC key (AES-256).
const NetKeyBytes = 32

// SendNet sends v (a NetConfig or a NetState) and the keys, in the order
// its state names them (NetState.KeyCount).
func SendNet(w io.Writer, v any, keys [][]byte) error {
	if len(keys) > MaxNetKeys {
		return fmt.Errorf("cardproto: %d keys, at most %d", len(keys), MaxNetKeys)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := Write(w, b); err != nil {
		return err
	}
	for _, k := range keys {
		if len(k) != NetKeyBytes {
			return fmt.Errorf("cardproto: a key of %d bytes", len(k))
		}
		if err := Write(w, k); err != nil {
			return err
		}
	}
	return nil
}

// ReceiveNet reads what SendNet sent into v, whose state st names the
// keys that follow; the keys are in locked memory the caller frees.
func ReceiveNet(r io.Reader, v any, st func() *NetState) ([]*keymem.Buf, error) {
	b, err := Read(r)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("cardproto: net state: %w", err)
	}
	n := st().KeyCount()
	if len(st().KeyEpochs) == 0 || n > MaxNetKeys {
		return nil, fmt.Errorf("cardproto: %d keys (a current one, at most %d in all)", n, MaxNetKeys)
	}
	keys := make([]*keymem.Buf, 0, n)
	for range n {
		k, err := ReadSecret(r)
		if err == nil && (k == nil || k.Len() != NetKeyBytes) {
			k.Free()
			err = fmt.Errorf("cardproto: a VPC key of the wrong length")
		}
		if err != nil {
			for _, k := range keys {
				k.Free()
			}
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}
