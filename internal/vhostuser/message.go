package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Request is a vhost-user message type (front-end to back-end).
type Request uint32

// Requests implemented here (numbering from vhost-user.rst).
const (
	GetFeatures         Request = 1
	SetFeatures         Request = 2
	SetOwner            Request = 3
	ResetOwner          Request = 4
	SetMemTable         Request = 5
	SetLogBase          Request = 6
	SetLogFD            Request = 7
	SetVringNum         Request = 8
	SetVringAddr        Request = 9
	SetVringBase        Request = 10
	GetVringBase        Request = 11
	SetVringKick        Request = 12
	SetVringCall        Request = 13
	SetVringErr         Request = 14
	GetProtocolFeatures Request = 15
	SetProtocolFeatures Request = 16
	GetQueueNum         Request = 17
	SetVringEnable      Request = 18
	SetBackendReqFD     Request = 21
	GetConfig           Request = 24
	SetConfig           Request = 25
	GetInflightFD       Request = 31
	SetInflightFD       Request = 32
	ResetDevice         Request = 34
	GetMaxMemSlots      Request = 36
)

func (r Request) String() string {
	if n, ok := requestNames[r]; ok {
		return n
	}
	return fmt.Sprintf("request(%d)", uint32(r))
}

var requestNames = map[Request]string{
	GetFeatures: "GET_FEATURES", SetFeatures: "SET_FEATURES", SetOwner: "SET_OWNER", ResetOwner: "RESET_OWNER",
	SetMemTable: "SET_MEM_TABLE", SetLogBase: "SET_LOG_BASE", SetLogFD: "SET_LOG_FD",
	SetVringNum: "SET_VRING_NUM", SetVringAddr: "SET_VRING_ADDR", SetVringBase: "SET_VRING_BASE",
	GetVringBase: "GET_VRING_BASE", SetVringKick: "SET_VRING_KICK", SetVringCall: "SET_VRING_CALL",
	SetVringErr: "SET_VRING_ERR", GetProtocolFeatures: "GET_PROTOCOL_FEATURES",
	SetProtocolFeatures: "SET_PROTOCOL_FEATURES", GetQueueNum: "GET_QUEUE_NUM", SetVringEnable: "SET_VRING_ENABLE",
	SetBackendReqFD: "SET_BACKEND_REQ_FD", GetConfig: "GET_CONFIG", SetConfig: "SET_CONFIG",
	GetInflightFD: "GET_INFLIGHT_FD", SetInflightFD: "SET_INFLIGHT_FD", ResetDevice: "RESET_DEVICE",
	GetMaxMemSlots: "GET_MAX_MEM_SLOTS",
}

// Header flags.
const (
	flagVersion   = 0x1
	flagVersionMk = 0x3
	flagReply     = 0x4
	flagNeedReply = 0x8
)

// Feature bits.
const (
	// FProtocolFeatures is VHOST_USER_F_PROTOCOL_FEATURES, a virtio
	// feature bit used by vhost-user itself.
	FProtocolFeatures = 30

	PFMQ            = 0
	PFReplyAck      = 3
	PFConfig        = 9
	PFInflightShmfd = 12
	PFResetDevice   = 13
)

// Protocol limits.
const (
	HeaderSize     = 12
	MaxPayload     = 4096 // larger than any message implemented here
	MaxFDs         = 8    // VHOST_MEMORY_BASELINE_NREGIONS
	MaxRegions     = 8
	MaxConfigSize  = 256
	vringIdxMask   = 0xff
	vringNoFDFlag  = 0x100
	regionWireSize = 32
)

// Errors returned for malformed messages.
var (
	ErrMalformed   = errors.New("vhostuser: malformed message")
	ErrUnsupported = errors.New("vhostuser: unsupported request")
)

// Message is one decoded message: header fields, raw payload, and the
// file descriptors that came with it (owned by the receiver).
type Message struct {
	Request Request
	Flags   uint32
	Payload []byte
	FDs     []int
}

// NeedReply tells whether the sender asked for a REPLY_ACK.
func (m *Message) NeedReply() bool { return m.Flags&flagNeedReply != 0 }

// parseHeader validates a 12-byte header.
func parseHeader(b []byte) (req Request, flags, size uint32, err error) {
	if len(b) < HeaderSize {
		return 0, 0, 0, fmt.Errorf("%w: short header", ErrMalformed)
	}
	req = Request(binary.LittleEndian.Uint32(b[0:]))
	flags = binary.LittleEndian.Uint32(b[4:])
	size = binary.LittleEndian.Uint32(b[8:])
	if flags&flagVersionMk != flagVersion {
		return 0, 0, 0, fmt.Errorf("%w: version %d", ErrMalformed, flags&flagVersionMk)
	}
	if size > MaxPayload {
		return 0, 0, 0, fmt.Errorf("%w: payload of %d bytes", ErrMalformed, size)
	}
	return req, flags, size, nil
}

func putHeader(b []byte, req Request, flags, size uint32) {
	binary.LittleEndian.PutUint32(b[0:], uint32(req))
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint32(b[8:], size)
}

// U64 decodes a payload that is one u64.
func (m *Message) U64() (uint64, error) {
	if len(m.Payload) != 8 {
		return 0, fmt.Errorf("%w: %v payload of %d bytes, want 8", ErrMalformed, m.Request, len(m.Payload))
	}
	return binary.LittleEndian.Uint64(m.Payload), nil
}

// VringState is struct vhost_vring_state.
type VringState struct {
	Index uint32
	Num   uint32
}

func (m *Message) VringState() (VringState, error) {
	if len(m.Payload) != 8 {
		return VringState{}, fmt.Errorf("%w: %v payload of %d bytes, want 8", ErrMalformed, m.Request, len(m.Payload))
	}
	return VringState{binary.LittleEndian.Uint32(m.Payload), binary.LittleEndian.Uint32(m.Payload[4:])}, nil
}

func (s VringState) bytes() []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, s.Index)
	binary.LittleEndian.PutUint32(b[4:], s.Num)
	return b
}

// VringAddr is struct vhost_vring_addr: ring addresses in the frontend's
// virtual address space.
type VringAddr struct {
	Index                       uint32
	Flags                       uint32
	Desc, Used, Avail, LogGuest uint64
}

func (m *Message) VringAddr() (VringAddr, error) {
	if len(m.Payload) != 40 {
		return VringAddr{}, fmt.Errorf("%w: SET_VRING_ADDR payload of %d bytes, want 40", ErrMalformed, len(m.Payload))
	}
	p := m.Payload
	return VringAddr{
		Index: binary.LittleEndian.Uint32(p), Flags: binary.LittleEndian.Uint32(p[4:]),
		Desc: binary.LittleEndian.Uint64(p[8:]), Used: binary.LittleEndian.Uint64(p[16:]),
		Avail: binary.LittleEndian.Uint64(p[24:]), LogGuest: binary.LittleEndian.Uint64(p[32:]),
	}, nil
}

// bytes encodes the struct; its fields are in wire order with no padding.
func (a VringAddr) bytes() []byte { return encodeStruct(a, 40) }

// MemRegion is one VhostUserMemoryRegion.
type MemRegion struct {
	GuestAddr, Size, UserAddr, MmapOffset uint64
}

// MemTable decodes SET_MEM_TABLE: one region per file descriptor.
func (m *Message) MemTable() ([]MemRegion, error) {
	p := m.Payload
	if len(p) < 8 {
		return nil, fmt.Errorf("%w: SET_MEM_TABLE payload of %d bytes", ErrMalformed, len(p))
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > MaxRegions {
		return nil, fmt.Errorf("%w: %d memory regions", ErrMalformed, n)
	}
	if uint64(len(p)) < 8+uint64(n)*regionWireSize {
		return nil, fmt.Errorf("%w: SET_MEM_TABLE payload of %d bytes for %d regions", ErrMalformed, len(p), n)
	}
	if len(m.FDs) != int(n) {
		return nil, fmt.Errorf("%w: %d regions but %d file descriptors", ErrMalformed, n, len(m.FDs))
	}
	regions := make([]MemRegion, n)
	for i := range regions {
		r := p[8+i*regionWireSize:]
		regions[i] = MemRegion{
			GuestAddr: binary.LittleEndian.Uint64(r), Size: binary.LittleEndian.Uint64(r[8:]),
			UserAddr: binary.LittleEndian.Uint64(r[16:]), MmapOffset: binary.LittleEndian.Uint64(r[24:]),
		}
		if regions[i].Size == 0 || regions[i].GuestAddr+regions[i].Size < regions[i].GuestAddr ||
			regions[i].UserAddr+regions[i].Size < regions[i].UserAddr || regions[i].MmapOffset+regions[i].Size < regions[i].MmapOffset {
			return nil, fmt.Errorf("%w: memory region %d overflows", ErrMalformed, i)
		}
	}
	return regions, nil
}

func memTableBytes(regions []MemRegion) []byte {
	b := make([]byte, 8+len(regions)*regionWireSize)
	binary.LittleEndian.PutUint32(b, uint32(len(regions)))
	for i, r := range regions {
		o := b[8+i*regionWireSize:]
		binary.LittleEndian.PutUint64(o, r.GuestAddr)
		binary.LittleEndian.PutUint64(o[8:], r.Size)
		binary.LittleEndian.PutUint64(o[16:], r.UserAddr)
		binary.LittleEndian.PutUint64(o[24:], r.MmapOffset)
	}
	return b
}

// VringFile decodes SET_VRING_KICK/CALL/ERR: a queue index and either one
// file descriptor or the "no fd" flag (polling mode, unsupported here).
func (m *Message) VringFile() (index uint32, fd int, err error) {
	v, err := m.U64()
	if err != nil {
		return 0, -1, err
	}
	if v&^uint64(vringIdxMask|vringNoFDFlag) != 0 {
		return 0, -1, fmt.Errorf("%w: %v value %#x", ErrMalformed, m.Request, v)
	}
	index = uint32(v & vringIdxMask)
	if v&vringNoFDFlag != 0 {
		if len(m.FDs) != 0 {
			return 0, -1, fmt.Errorf("%w: %v with the no-fd flag carries a descriptor", ErrMalformed, m.Request)
		}
		return index, -1, nil
	}
	if len(m.FDs) != 1 {
		return 0, -1, fmt.Errorf("%w: %v carries %d descriptors, want 1", ErrMalformed, m.Request, len(m.FDs))
	}
	return index, m.FDs[0], nil
}

// ConfigMsg is the payload of GET_CONFIG and SET_CONFIG.
type ConfigMsg struct {
	Offset, Size, Flags uint32
	Data                []byte
}

func (m *Message) Config() (ConfigMsg, error) {
	p := m.Payload
	if len(p) < 12 {
		return ConfigMsg{}, fmt.Errorf("%w: config payload of %d bytes", ErrMalformed, len(p))
	}
	c := ConfigMsg{Offset: binary.LittleEndian.Uint32(p), Size: binary.LittleEndian.Uint32(p[4:]), Flags: binary.LittleEndian.Uint32(p[8:])}
	if c.Size > MaxConfigSize || c.Offset > MaxConfigSize || c.Offset+c.Size > MaxConfigSize || uint64(len(p)) != 12+uint64(c.Size) {
		return ConfigMsg{}, fmt.Errorf("%w: config offset %d size %d in %d bytes", ErrMalformed, c.Offset, c.Size, len(p))
	}
	c.Data = p[12:]
	return c, nil
}

func (c ConfigMsg) bytes() []byte {
	b := make([]byte, 12+len(c.Data))
	binary.LittleEndian.PutUint32(b, c.Offset)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(c.Data)))
	binary.LittleEndian.PutUint32(b[8:], c.Flags)
	copy(b[12:], c.Data)
	return b
}

// Inflight is struct VhostUserInflight.
type Inflight struct {
	MmapSize, MmapOffset uint64
	NumQueues, QueueSize uint16
}

func (m *Message) Inflight() (Inflight, error) {
	if len(m.Payload) != 24 && len(m.Payload) != 20 {
		return Inflight{}, fmt.Errorf("%w: inflight payload of %d bytes", ErrMalformed, len(m.Payload))
	}
	p := m.Payload
	return Inflight{binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:]),
		binary.LittleEndian.Uint16(p[16:]), binary.LittleEndian.Uint16(p[18:])}, nil
}

// bytes encodes the struct with its 4 bytes of trailing padding, as
// QEMU sends it.
func (in Inflight) bytes() []byte { return encodeStruct(in, 24) }

// encodeStruct encodes a struct of fixed-size fields, in field order,
// little-endian, into size bytes (the wire size, padding included).
func encodeStruct(v any, size int) []byte {
	b := make([]byte, size)
	if _, err := binary.Encode(b, binary.LittleEndian, v); err != nil {
		panic("vhostuser: " + err.Error()) // a wire struct larger than its size
	}
	return b
}

func u64Bytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b
}
