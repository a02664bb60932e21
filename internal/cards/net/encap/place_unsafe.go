package encap

import (
	"crypto/cipher"
	"fmt"
	"reflect"
	"unsafe"
)

// Why unsafe: a session's AES-GCM state (the AES round keys, of which the
// first two are the session key itself, and the GHASH key powers) is built
// by crypto/cipher in a heap object, and the Go heap can be neither locked
// against swap nor left out of core dumps, nor wiped by us when the
// session ends. So, as blk places its XTS round keys with keymem.Place,
// place moves that state into a slot of locked memory (internal/keymem)
// and wipes the heap original; the AEAD returned is the same type pointing
// at the slot. wipe clears the heap *aes.Block that the AEAD was built
// from.
//
// This is sound only for a state that holds no Go pointers (the garbage
// collector does not scan the slot, and a pointer copied there would
// neither keep its target alive nor be updated) and that does not depend
// on its own address. stateType checks the first by reflection, field by
// field, and refuses the state otherwise; the standard library's AES-GCM
// is a plain struct of round keys, sizes and a table. Nothing is placed
// at an offset that the type's alignment forbids. A slot must outlive
// every use of the AEAD placed in it: Sender and Receiver free slots only
// when no Seal or Open holds them.

// stateType returns the type of the state behind x, which must be a
// non-nil pointer to a pointer-free type.
func stateType(x any) (reflect.Type, error) {
	v := reflect.ValueOf(x)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil, fmt.Errorf("%w: %T is not a pointer to its state", ErrNoHardwareAES, x)
	}
	t := v.Type().Elem()
	if !pointerFree(t) {
		return nil, fmt.Errorf("%w: %T holds pointers and cannot be kept in locked memory", ErrNoHardwareAES, x)
	}
	return t, nil
}

// pointerFree reports whether a value of type t holds no pointers.
func pointerFree(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return t.Len() == 0 || pointerFree(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !pointerFree(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// place moves the state of a into slot and wipes the original. slot must
// be at least stateSize bytes, aligned for the state.
func place(a cipher.AEAD, slot []byte) (cipher.AEAD, error) {
	t, err := stateType(a)
	if err != nil {
		return nil, err
	}
	n := t.Size()
	if uintptr(len(slot)) < n || uintptr(unsafe.Pointer(unsafe.SliceData(slot)))%uintptr(t.Align()) != 0 {
		return nil, fmt.Errorf("encap: a slot of %d bytes cannot hold %v (%d bytes)", len(slot), t, n)
	}
	src := unsafe.Slice((*byte)(reflect.ValueOf(a).UnsafePointer()), n)
	copy(slot, src)
	clear(src)
	placed, ok := reflect.NewAt(t, unsafe.Pointer(unsafe.SliceData(slot))).Interface().(cipher.AEAD)
	if !ok {
		clear(slot[:n])
		return nil, fmt.Errorf("encap: %v is not an AEAD", t)
	}
	return placed, nil
}

// wipe clears the state behind x, a pointer to a pointer-free type.
func wipe(x any) error {
	t, err := stateType(x)
	if err != nil {
		return err
	}
	clear(unsafe.Slice((*byte)(reflect.ValueOf(x).UnsafePointer()), t.Size()))
	return nil
}
