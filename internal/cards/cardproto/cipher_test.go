package cardproto

import (
	"testing"

	"github.com/azote/azote/internal/xts"
)

// TestEncryptionAvailableAgreesWithXTS: azoted's up-front check gives
// the cipher's own verdict, so it never accepts a volume the card would
// refuse, nor refuses one it would serve.
func TestEncryptionAvailableAgreesWithXTS(t *testing.T) {
	if (EncryptionAvailable() == nil) != (xts.Available() == nil) {
		t.Fatalf("cardproto says %v, xts says %v", EncryptionAvailable(), xts.Available())
	}
	if ErrNoAESNI.Error() != xts.ErrNoAESNI.Error() {
		t.Errorf("messages differ:\n%s\n%s", ErrNoAESNI, xts.ErrNoAESNI)
	}
}
