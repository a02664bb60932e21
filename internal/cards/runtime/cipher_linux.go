package runtime

import (
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/xts"
)

// VolumeCipher expands a volume key into AES-XTS round keys placed in
// locked memory left out of core dumps, like the key itself. A CPU
// without AES-NI is refused (xts.ErrNoAESNI) before any work: never the
// table-based AES beside other tenants. release wipes and frees the
// round keys.
func VolumeCipher(key []byte) (c *xts.Cipher, release func(), err error) {
	mem, err := keymem.New(keymem.SizeOf[xts.Cipher]())
	if err != nil {
		return nil, nil, err
	}
	if c, err = keymem.Place[xts.Cipher](mem); err == nil {
		err = xts.Init(c, key)
	}
	if err != nil {
		mem.Free()
		return nil, nil, err
	}
	return c, func() { c.Wipe(); mem.Free() }, nil
}
