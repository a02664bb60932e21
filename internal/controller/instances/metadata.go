package instances

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/controller/refusal"
)

// What an instance's metadata service (IMDSv2, answered by its net
// cards) serves is built here, whole, from the instance's record and its
// network, every time a card is given its state: at start, at each change
// of its VPC, and when the instance's own inputs change (pushMetadata).
// The launch inputs it serves — the key pair's public key and the user
// data — are validated and fixed at run (guestInputs) and kept in the
// record, so that what the guest reads cannot change under it.

// Defaults of an instance's metadata options, as EC2's for a new
// instance that asks for IMDSv2 only.
const (
	DefaultHopLimit = 1
	MaxHopLimit     = 64
)

// launchInputs are a launch's guest-visible inputs, validated.
type launchInputs struct {
	keyName, publicKey string
	userData           []byte
	opts               api.MetadataOptions
}

// guestInputs validates the key pair, user data and metadata options of
// a launch before anything is made.
func (s *Service) guestInputs(req api.RunInstanceRequest) (launchInputs, error) {
	in := launchInputs{opts: api.MetadataOptions{HTTPTokens: api.HTTPTokensRequired, HTTPPutResponseHopLimit: DefaultHopLimit}}
	if len(req.UserData) > api.MaxUserData {
		return in, refusal.New(refusal.ErrInvalidParameter, "user data of %d bytes: at most %d", len(req.UserData), api.MaxUserData)
	}
	in.userData = req.UserData
	if o := req.Metadata; o != nil {
		switch o.HTTPTokens {
		case "":
		case api.HTTPTokensRequired, api.HTTPTokensOptional:
			in.opts.HTTPTokens = o.HTTPTokens
		default:
			return in, refusal.New(refusal.ErrInvalidParameter, "metadata http tokens %q: want %s or %s", o.HTTPTokens, api.HTTPTokensRequired, api.HTTPTokensOptional)
		}
		switch h := o.HTTPPutResponseHopLimit; {
		case h == 0:
		case h < 1 || h > MaxHopLimit:
			return in, refusal.New(refusal.ErrInvalidParameter, "metadata hop limit %d: 1 to %d", h, MaxHopLimit)
		default:
			in.opts.HTTPPutResponseHopLimit = h
		}
	}
	if req.KeyName != "" {
		if s.cfg.KeyPairs == nil {
			return in, refusal.New(refusal.ErrInvalidParameter, "this azoted has no key pairs")
		}
		kp, err := s.cfg.KeyPairs.Resolve(req.KeyName)
		if err != nil {
			return in, err
		}
		in.keyName, in.publicKey = kp.KeyName, kp.PublicKey
	}
	return in, nil
}

// apply records the inputs in a new instance's record.
func (in launchInputs) apply(rec *instanceRecord) {
	rec.KeyName, rec.PublicKey = in.keyName, in.publicKey
	opts := in.opts
	rec.Metadata = &opts
	if len(in.userData) > 0 {
		rec.UserData = in.userData
		sum := sha256.Sum256(in.userData)
		rec.UserDataSHA256 = hex.EncodeToString(sum[:])
	}
}

// UserData returns the user data of instance ref.
func (s *Service) UserData(_ context.Context, ref string) (api.UserDataResponse, error) {
	rec, err := s.resolve(ref)
	if err != nil {
		return api.UserDataResponse{}, err
	}
	return api.UserDataResponse{InstanceID: rec.ID, UserData: rec.UserData, SHA256: rec.UserDataSHA256}, nil
}

// InstanceType is the name of a vCPU/memory shape, as the metadata
// service's instance-type and the identity document give it:
// "azote.<vCPUs>c.<MiB>m", e.g. azote.2c.1024m. azote has no catalogue
// of types; the name says the shape itself.
func InstanceType(vcpus, memoryMiB int) string {
	return fmt.Sprintf("azote.%dc.%dm", vcpus, memoryMiB)
}

// Hostname is an instance's host name as EC2 makes it from its primary
// private address: ip-10-0-1-5 for 10.0.1.5.
func Hostname(privateIP string) string {
	return "ip-" + strings.ReplaceAll(privateIP, ".", "-")
}

// IdentityDocument is dynamic/instance-identity/document, with EC2's
// fields in EC2's order; the ones azote has no value for are null, as
// EC2 serves them for an instance without them.
type IdentityDocument struct {
	AccountID               string   `json:"accountId"`
	Architecture            string   `json:"architecture"`
	AvailabilityZone        string   `json:"availabilityZone"`
	BillingProducts         []string `json:"billingProducts"`
	DevpayProductCodes      []string `json:"devpayProductCodes"`
	MarketplaceProductCodes []string `json:"marketplaceProductCodes"`
	ImageID                 string   `json:"imageId"`
	InstanceID              string   `json:"instanceId"`
	InstanceType            string   `json:"instanceType"`
	KernelID                *string  `json:"kernelId"`
	PendingTime             string   `json:"pendingTime"`
	PrivateIP               string   `json:"privateIp"`
	RamdiskID               *string  `json:"ramdiskId"`
	Region                  string   `json:"region"`
	Version                 string   `json:"version"`
}

// architecture is the identity document's name of the host's
// architecture (EC2's: x86_64, arm64).
func architecture() string {
	if runtime.GOARCH == "amd64" {
		return "x86_64"
	}
	return runtime.GOARCH
}

// placement is the host's region and availability zone, the zone being
// the region's "a" when the configuration names none.
func (s *Service) placement() (region, zone string) {
	region, zone = s.cfg.Region, s.cfg.AvailabilityZone
	if region == "" {
		region = "local"
	}
	if zone == "" {
		zone = region + "a"
	}
	return region, zone
}

func (s *Service) accountID() string {
	if s.cfg.AccountID == nil {
		return ""
	}
	return s.cfg.AccountID()
}

// metadata is what the net card of interface ifaceID serves for the
// instance the interface is attached to; nil when it is attached to none
// (a host gateway's, or a detached one).
func (s *Service) metadata(ifaceID string) (*cardproto.NetMetadata, error) {
	n, err := s.vpcs.ResolveInterface(ifaceID)
	if err != nil {
		return nil, err
	}
	if n.Attachment == nil || n.Type == api.InterfaceTypeHostGateway {
		return nil, nil
	}
	var rec instanceRecord
	if rec, err = s.get(n.Attachment.InstanceID); err != nil {
		return nil, fmt.Errorf("metadata of interface %s: %w", ifaceID, err)
	}
	region, zone := s.placement()
	md := &cardproto.NetMetadata{
		InstanceID: rec.ID, ImageID: rec.ImageID, InstanceType: InstanceType(rec.VCPUs, rec.MemoryMiB),
		AccountID: s.accountID(), Region: region, AvailabilityZone: zone,
		UserData:   rec.UserData,
		HTTPTokens: api.HTTPTokensRequired, HopLimit: DefaultHopLimit,
	}
	if o := rec.Metadata; o != nil {
		if o.HTTPTokens != "" {
			md.HTTPTokens = o.HTTPTokens
		}
		if o.HTTPPutResponseHopLimit != 0 {
			md.HopLimit = o.HTTPPutResponseHopLimit
		}
	}
	if rec.PublicKey != "" {
		// EC2 serves the key with the pair's name as its comment.
		md.PublicKeys = []cardproto.NetPublicKey{{Name: rec.KeyName, OpenSSH: rec.PublicKey + " " + rec.KeyName}}
	}
	ifaces, err := s.vpcs.InstanceInterfaces(rec.ID)
	if err != nil {
		return nil, err
	}
	if md.Interfaces, err = s.metadataInterfaces(ifaces); err != nil {
		return nil, err
	}
	primary := ""
	if len(ifaces) > 0 {
		primary = ifaces[0].PrivateIP
		md.Hostname = Hostname(primary)
	}
	if md.IdentityDocument, md.IdentitySignature, err = s.identity(rec, primary); err != nil {
		return nil, err
	}
	if md.Role, err = s.roleCredentials(rec); err != nil {
		return nil, err
	}
	return md, nil
}

// metadataInterfaces describes an instance's interfaces as
// network/interfaces/macs/ serves them.
func (s *Service) metadataInterfaces(ifaces []api.NetworkInterface) ([]cardproto.NetMetadataInterface, error) {
	vpcCIDR := map[string]string{}
	var out []cardproto.NetMetadataInterface
	for _, ni := range ifaces {
		mi := cardproto.NetMetadataInterface{MAC: ni.MAC, InterfaceID: ni.ID, LocalIPv4: ni.PrivateIP,
			SubnetID: ni.SubnetID, VPCID: ni.VPCID}
		if ni.Attachment != nil {
			mi.DeviceNumber = ni.Attachment.DeviceIndex
		}
		sn, err := s.vpcs.ResolveSubnet(ni.SubnetID)
		if err != nil {
			return nil, err
		}
		mi.SubnetCIDR = sn.CIDR
		if _, ok := vpcCIDR[ni.VPCID]; !ok {
			v, err := s.vpcs.ResolveVPC(ni.VPCID)
			if err != nil {
				return nil, err
			}
			vpcCIDR[ni.VPCID] = v.CIDR
		}
		mi.VPCCIDR = vpcCIDR[ni.VPCID]
		for _, g := range ni.SecurityGroups {
			gr, err := s.vpcs.ResolveGroup(g)
			if err != nil {
				return nil, err
			}
			mi.SecurityGroupIDs = append(mi.SecurityGroupIDs, gr.ID)
			mi.SecurityGroups = append(mi.SecurityGroups, gr.Name)
		}
		out = append(out, mi)
	}
	return out, nil
}

// identity is rec's identity document and its signature by the host's
// identity key: ECDSA P-256 over the SHA-256 of the document as served,
// ASN.1 DER, base64 (docs/guests.md verifies one with openssl).
func (s *Service) identity(rec instanceRecord, privateIP string) ([]byte, string, error) {
	region, zone := s.placement()
	pending := rec.CreatedAt
	if rec.LaunchedAt != nil {
		pending = *rec.LaunchedAt
	}
	doc := IdentityDocument{
		AccountID: s.accountID(), Architecture: architecture(), AvailabilityZone: zone,
		ImageID: rec.ImageID, InstanceID: rec.ID, InstanceType: InstanceType(rec.VCPUs, rec.MemoryMiB),
		PendingTime: pending.UTC().Format(time.RFC3339), PrivateIP: privateIP, Region: region, Version: "2017-09-30",
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, "", err
	}
	if s.cfg.IdentityKey == nil {
		return raw, "", nil
	}
	sum := sha256.Sum256(raw)
	sig, err := s.cfg.IdentityKey.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, "", fmt.Errorf("signing the identity document of %s: %w", rec.ID, err)
	}
	return raw, base64.StdEncoding.EncodeToString(sig), nil
}

// pushMetadata gives the net cards of rt's instance their state again,
// for a change of the instance's own metadata (its launch, its role's
// new credentials), which no VPC change would carry.
func (s *Service) pushMetadata(rt *instanceRuntime) {
	rt.mu.Lock()
	set := rt.cards
	rt.mu.Unlock()
	if set == nil {
		return
	}
	set.mu.Lock()
	ncs := append([]*netCard(nil), set.nets...)
	set.mu.Unlock()
	for _, nc := range ncs {
		if _, err := s.pushCard(nc); err != nil {
			s.log.Warn("pushing an instance's metadata to its card", "instance", rt.id, "interface", nc.ifaceID, "err", err)
		}
	}
}
