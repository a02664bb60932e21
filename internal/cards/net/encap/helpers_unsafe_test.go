package encap

import (
	"reflect"
	"unsafe"
)

// unsafeBytes is the memory of the state behind x (a pointer to a
// pointer-free type), to check that it was wiped.
func unsafeBytes(x any) []byte {
	t, err := stateType(x)
	if err != nil {
		return nil
	}
	return unsafe.Slice((*byte)(reflect.ValueOf(x).UnsafePointer()), t.Size())
}
