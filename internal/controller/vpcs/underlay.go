package vpcs

import (
	"net/netip"

	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// UnderlayTable holds, by interface id, where the card serving the
// interface receives its underlay datagrams ("ip:port"): written by the
// host that runs the card when it binds the socket, read by every card
// of the VPC (Mapping), on every host that shares the store. The record
// also says which keys that card holds (KeyAccepted), for a key rotation
// to wait for.
const UnderlayTable = "underlays"

type underlayRecord struct {
	Addr string `json:"addr"`
	// KeyEpoch is the newest key epoch the card holds, current or next,
	// as its host recorded after giving it a state; 0 until then.
	KeyEpoch uint32 `json:"key_epoch,omitempty"`
}

// SetUnderlay records where the card of interface id listens, holding no
// key yet; the zero AddrPort forgets it (the card is gone), which
// promotes a key rotation that waited for that card only. The VPC's
// cards hear of it (Changed).
func (s *Service) SetUnderlay(id string, addr netip.AddrPort) error {
	return s.update(func(tx store.Tx) (string, error) {
		var n InterfaceRecord
		if err := tx.Get(InterfaceTable, id, &n); err != nil {
			return "", refusal.New(ErrInterfaceNotFound, "no network interface %q", id)
		}
		v, err := vpcOfTx(tx, n.VPCID)
		if err != nil {
			return "", err
		}
		if addr.IsValid() {
			err = tx.Put(UnderlayTable, id, underlayRecord{Addr: addr.String()})
		} else {
			err = tx.Delete(UnderlayTable, id)
		}
		if err != nil {
			return "", err
		}
		if !addr.IsValid() {
			promoted, err := promoteIfAcceptedTx(tx, &v)
			if err != nil {
				return "", err
			}
			if promoted {
				s.log.Info("VPC key rotated: every card left has the new key", "id", v.ID, "epoch", v.KeyEpoch)
			}
		}
		// Written with the VPC, as every change in it: the other hosts
		// watch the VPC records alone (Follow).
		return n.VPCID, bumpTx(tx, &v)
	})
}

// underlayOf reads where interface id's card listens; the zero AddrPort
// when no card serves it now.
func underlayOf(tx store.Tx, id string) netip.AddrPort {
	var r underlayRecord
	if tx.Get(UnderlayTable, id, &r) != nil {
		return netip.AddrPort{}
	}
	a, _ := netip.ParseAddrPort(r.Addr)
	return a
}
