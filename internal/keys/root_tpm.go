package keys

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/azote/azote/internal/durable"
	"github.com/azote/azote/internal/keymem"
)

// host.key.tpm is the root key sealed in a keyed-hash object of the TPM,
// under a storage root key (SRK) made in the owner hierarchy from a
// standard template. The TPM encrypts and MACs the object's private part
// under a key derived from its owner seed, which never leaves it, so the
// file opens on this TPM alone, and there only while its owner hierarchy
// is not cleared:
//
//	magic    "AZTPMRK1"  8 bytes
//	srk      uint8       the SRK template (srkECCP256)
//	nameLen  uint16 BE   then the SRK's name when the key was sealed
//	pubLen   uint16 BE   then the object's TPMT_PUBLIC
//	privLen  uint16 BE   then its TPM2B_PRIVATE contents
//
// The SRK's name pins its public key. Every command that carries the key
// runs in a session salted to that key with AES-CFB parameter
// encryption, so the key never crosses the bus in clear, and a bus
// interposer cannot hand azoted a key of its own to salt to: the SRK it
// answers with must have the name recorded when the key was sealed.
const tpmMagic = "AZTPMRK1"

// srkECCP256 names tpm2.ECCSRKTemplate, the TCG provisioning guidance's
// ECC P-256 SRK, which every TPM 2.0 makes in milliseconds (an RSA-2048
// primary can take seconds). The SRK is made again at every start, and
// is the same key each time as long as the owner seed is.
const srkECCP256 = 1

// Bounds of the file's fields; a real TPM's are well under them.
const (
	maxTPMName    = 2 + 64 // a hash algorithm and a digest
	maxTPMPublic  = 1024
	maxTPMPrivate = 1024
)

type tpmBlob struct {
	srk     uint8
	srkName []byte
	public  []byte // TPMT_PUBLIC
	private []byte // TPM2B_PRIVATE's buffer
}

func (b tpmBlob) marshal() []byte {
	out := append([]byte(tpmMagic), b.srk)
	for _, f := range [][]byte{b.srkName, b.public, b.private} {
		out = binary.BigEndian.AppendUint16(out, uint16(len(f)))
		out = append(out, f...)
	}
	return out
}

// parseTPMBlob reads host.key.tpm, strictly: lengths bounded, nothing
// after the private part, and the public part a sealed data object whose
// encoding is exactly what was read. What the TPM vouches for (that the
// private part belongs to the public one, under this TPM's SRK) is
// checked by the TPM at load.
func parseTPMBlob(data []byte) (tpmBlob, *tpm2.TPMTPublic, error) {
	var b tpmBlob
	r := reader{data: data}
	if string(r.next(len(tpmMagic))) != tpmMagic {
		return b, nil, fmt.Errorf("%w: not a TPM-sealed root key", ErrCorruptRootKey)
	}
	b.srk = r.u8()
	b.srkName = r.next(int(r.u16()))
	b.public = r.next(int(r.u16()))
	b.private = r.next(int(r.u16()))
	if r.err != nil {
		return b, nil, fmt.Errorf("%w: truncated", ErrCorruptRootKey)
	}
	if len(r.data) != 0 {
		return b, nil, fmt.Errorf("%w: %d bytes after the sealed object", ErrCorruptRootKey, len(r.data))
	}
	switch {
	case b.srk != srkECCP256:
		return b, nil, fmt.Errorf("%w: unknown storage root key template %d", ErrCorruptRootKey, b.srk)
	case len(b.srkName) == 0 || len(b.srkName) > maxTPMName:
		return b, nil, fmt.Errorf("%w: %d-byte storage root key name", ErrCorruptRootKey, len(b.srkName))
	case len(b.public) == 0 || len(b.public) > maxTPMPublic:
		return b, nil, fmt.Errorf("%w: %d-byte public part", ErrCorruptRootKey, len(b.public))
	case len(b.private) == 0 || len(b.private) > maxTPMPrivate:
		return b, nil, fmt.Errorf("%w: %d-byte private part", ErrCorruptRootKey, len(b.private))
	}
	pub, err := unmarshalPublic(b.public)
	if err != nil {
		return b, nil, err
	}
	if pub.Type != tpm2.TPMAlgKeyedHash || pub.NameAlg != tpm2.TPMAlgSHA256 {
		return b, nil, fmt.Errorf("%w: the object is not a sealed data object", ErrCorruptRootKey)
	}
	return b, pub, nil
}

// unmarshalPublic decodes a TPMT_PUBLIC, refusing bytes that do not
// encode back to themselves (trailing bytes, non-canonical fields).
func unmarshalPublic(data []byte) (pub *tpm2.TPMTPublic, err error) {
	// go-tpm's reflection-driven decoder was not written for hostile
	// input; a panic in it is a corrupt file, not a crash of azoted.
	defer func() {
		if recover() != nil {
			pub, err = nil, fmt.Errorf("%w: the public part does not decode", ErrCorruptRootKey)
		}
	}()
	pub, err = tpm2.Unmarshal[tpm2.TPMTPublic](data)
	if err != nil || !bytes.Equal(tpm2.Marshal(pub), data) {
		return nil, fmt.Errorf("%w: the public part does not decode", ErrCorruptRootKey)
	}
	return pub, nil
}

// sealedTemplate is the object the root key is sealed in: bound to this
// TPM and this parent (FixedTPM, FixedParent: it can never be
// duplicated), opened with an empty authorization value in a session,
// and outside dictionary-attack protection (NoDA), since there is no
// password to guess and a lockout would only stop azoted from starting.
var sealedTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:     true,
		FixedParent:  true,
		UserWithAuth: true,
		NoDA:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

// srk is the storage root key made for one open of the TPM.
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName // computed here from pub, not taken from the TPM
	pub    *tpm2.TPMTPublic
}

// createSRK makes the SRK in the owner hierarchy (transient: flushed
// after, and by the kernel's resource manager when azoted exits).
func createSRK(t transport.TPM) (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
			return nil, fmt.Errorf("root key: making the storage root key in the TPM's owner hierarchy: %w (the owner hierarchy has a password; azote needs it empty)", err)
		}
		return nil, fmt.Errorf("root key: making the storage root key in the TPM's owner hierarchy: %w", err)
	}
	s := &srk{handle: rsp.ObjectHandle}
	if s.pub, err = rsp.OutPublic.Contents(); err == nil {
		var name *tpm2.TPM2BName
		if name, err = tpm2.ObjectName(s.pub); err == nil {
			s.name = *name
		}
	}
	if err != nil {
		flush(t, s.handle)
		return nil, fmt.Errorf("root key: the TPM's storage root key: %w", err)
	}
	return s, nil
}

// session is the salted HMAC session that authorises one command and
// encrypts its first parameter on the way in or out: a session key only
// this TPM's SRK can recover, so the root key crosses the bus encrypted.
func (s *srk) session(dir tpm2.AuthOption) tpm2.Session {
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, dir, tpm2.Salted(s.handle, *s.pub))
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	// A failure leaves a transient object the resource manager flushes
	// when the device is closed; nothing to report.
	tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// sealTPM seals key in a new object under this TPM's SRK.
func sealTPM(t transport.TPM, key []byte) (tpmBlob, error) {
	s, err := createSRK(t)
	if err != nil {
		return tpmBlob{}, err
	}
	defer flush(t, s.handle)
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{
			Handle: s.handle, Name: s.name,
			Auth: s.session(tpm2.AESEncryption(128, tpm2.EncryptIn)),
		},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: key}),
		}},
		InPublic: tpm2.New2B(sealedTemplate),
	}.Execute(t)
	if err != nil {
		return tpmBlob{}, fmt.Errorf("root key: sealing in the TPM: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return tpmBlob{}, fmt.Errorf("root key: the TPM's sealed object: %w", err)
	}
	return tpmBlob{
		srk: srkECCP256, srkName: s.name.Buffer, public: tpm2.Marshal(pub), private: rsp.OutPrivate.Buffer,
	}, nil
}

// unsealTPM opens what sealTPM sealed, into locked memory.
func unsealTPM(t transport.TPM, b tpmBlob, pub *tpm2.TPMTPublic) (*keymem.Buf, error) {
	s, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, s.handle)
	if subtle.ConstantTimeCompare(s.name.Buffer, b.srkName) != 1 {
		return nil, fmt.Errorf("%w: this TPM's storage root key is not the one it was sealed under (another machine's TPM, this TPM after its owner hierarchy was cleared, or a changed file)", ErrSealedElsewhere)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptRootKey, err)
	}
	// Load carries nothing secret: the private part is encrypted under the
	// SRK, and the TPM checks its integrity against the public part.
	obj, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: b.private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](b.public),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("%w: the TPM does not load the sealed object (changed, or sealed by another TPM): %v", ErrCorruptRootKey, err)
	}
	defer flush(t, obj.ObjectHandle)
	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{
			Handle: obj.ObjectHandle, Name: *name,
			Auth: s.session(tpm2.AESEncryption(128, tpm2.EncryptOut)),
		},
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("root key: unsealing in the TPM: %w", err)
	}
	// go-tpm decrypted the response in its own buffers on the heap; this
	// clears the one that holds the key, the rest is left to the collector.
	defer clear(rsp.OutData.Buffer)
	if len(rsp.OutData.Buffer) != 32 {
		return nil, fmt.Errorf("%w: the sealed object holds %d bytes, want 32", ErrCorruptRootKey, len(rsp.OutData.Buffer))
	}
	return keymem.Copy(rsp.OutData.Buffer)
}

// sealTPMFile seals key in the TPM into host.key.tpm (durably, 0400).
func sealTPMFile(cfg RootConfig, key []byte) error {
	t, err := cfg.openTPM()
	if err != nil {
		return err
	}
	defer t.Close()
	b, err := sealTPM(t, key)
	if err != nil {
		return err
	}
	return durable.WriteFile(cfg.path(SourceTPM), b.marshal(), 0o400)
}

// unsealTPMFile opens host.key.tpm with the TPM.
func unsealTPMFile(cfg RootConfig) (*keymem.Buf, error) {
	path := cfg.path(SourceTPM)
	data, err := readSealedFile(path)
	if err != nil {
		return nil, err
	}
	b, pub, err := parseTPMBlob(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t, err := cfg.openTPM()
	if err != nil {
		return nil, err
	}
	defer t.Close()
	key, err := unsealTPM(t, b, pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}
