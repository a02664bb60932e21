package dhcp

import (
	"errors"
	"fmt"
)

// Sentinel errors, for the card's drop counters; test with errors.Is.
var (
	// ErrMalformed means a request breaks RFC 2131's format: too short,
	// not a BOOTREQUEST, an option running past its field, an option of
	// the wrong length, a REQUEST that names no address.
	ErrMalformed = errors.New("dhcp: malformed request")
	// ErrUnsupported means a well-formed message a server does not
	// answer: plain BOOTP (no magic cookie or no message type), a
	// hardware type other than Ethernet, a server's message type.
	ErrUnsupported = errors.New("dhcp: unsupported request")
	// ErrNotClient means the request's client hardware address is not
	// the interface's.
	ErrNotClient = errors.New("dhcp: request for another hardware address")
	// ErrConfig means the Config cannot be served.
	ErrConfig = errors.New("dhcp: invalid configuration")
)

var (
	errShort       = fmt.Errorf("%w: shorter than the fixed BOOTP header and magic cookie", ErrMalformed)
	errOp          = fmt.Errorf("%w: op is not BOOTREQUEST", ErrMalformed)
	errOptionLen   = fmt.Errorf("%w: option runs past its field", ErrMalformed)
	errOptionSize  = fmt.Errorf("%w: option of the wrong length", ErrMalformed)
	errNoAddress   = fmt.Errorf("%w: REQUEST with neither requested address nor ciaddr", ErrMalformed)
	errHType       = fmt.Errorf("%w: hardware type is not Ethernet", ErrUnsupported)
	errBOOTP       = fmt.Errorf("%w: BOOTP without DHCP message type", ErrUnsupported)
	errMessageType = fmt.Errorf("%w: message type a server does not answer", ErrUnsupported)
	errReplyType   = fmt.Errorf("%w: not a reply made by Reply", ErrMalformed)
	errServerIP    = fmt.Errorf("%w: ServerIP is not an IPv4 address", ErrConfig)
	errClientIP    = fmt.Errorf("%w: ClientIP is not an IPv4 address", ErrConfig)
	errRouter      = fmt.Errorf("%w: Router is not an IPv4 address", ErrConfig)
	errPrefix      = fmt.Errorf("%w: Prefix is not between 1 and 32", ErrConfig)
	errDNS         = fmt.Errorf("%w: DNS holds a non-IPv4 address or more than 63", ErrConfig)
	errMTU         = fmt.Errorf("%w: MTU below 68", ErrConfig)
	errRoute       = fmt.Errorf("%w: a route is not IPv4", ErrConfig)
	errRoutesLen   = fmt.Errorf("%w: routes take more than the 255 bytes of one option 121", ErrConfig)
	errLease       = fmt.Errorf("%w: negative Lease", ErrConfig)
	errHostname    = fmt.Errorf("%w: Hostname is not a DNS name of at most 63 bytes", ErrConfig)
	errDomain      = fmt.Errorf("%w: Domain is not a DNS name", ErrConfig)
	errSameAddress = fmt.Errorf("%w: ClientIP equals ServerIP", ErrConfig)
)
