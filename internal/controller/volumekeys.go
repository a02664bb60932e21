package controller

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/keymem"
)

// volumeService is how the volumes name themselves to the KMS
// (kms:ViaService, invokedBy): the compute service, as EBS is ec2's.
const volumeService = "compute.azote"

// volumeKeys is the KMS as the volume owner uses it: a volume's data key
// is bound to its id by the encryption context, and its grant is named
// after it.
type volumeKeys struct{ c *Controller }

var _ volumes.DataKeys = volumeKeys{}

func volumeContext(id string) map[string]string { return map[string]string{"azote:volume": id} }

func grantName(id string) string { return "volume-" + id }

func (k volumeKeys) New(c *api.Caller, ref, id string) (string, []byte, *keymem.Buf, error) {
	if c == nil {
		// azoted itself, not an API request: the host's root.
		c = k.c.iam.HostRoot(int32(os.Getpid()))
	}
	dk, err := k.c.kms.NewDataKey(c, volumeService, ref, volumeContext(id), volumes.KeyBytes, grantName(id))
	if err != nil {
		return "", nil, nil, kmsRefusal(err)
	}
	return dk.KeyARN, dk.Ciphertext, dk.Plain, nil
}

func (k volumeKeys) Open(keyARN string, ct []byte, id string) (*keymem.Buf, error) {
	b, err := k.c.kms.DecryptDataKey(volumeService, keyARN, ct, volumeContext(id))
	return b, kmsRefusal(err)
}

func (k volumeKeys) Retire(keyARN, id string) error {
	return k.c.kms.RetireDataKeyGrant(volumeService, keyARN, grantName(id))
}

func (k volumeKeys) Usable(keyARN string) error {
	return kmsRefusal(k.c.kms.KeyUsable(keyARN))
}

func (k volumeKeys) Adopt(plain []byte, id string) (string, []byte, error) {
	dk, err := k.c.kms.AdoptDataKey(volumeService, plain, volumeContext(id), grantName(id))
	return dk.KeyARN, dk.Ciphertext, kmsRefusal(err)
}

// kmsRefusal turns the KMS's exceptions into the refusals of azote's own
// API, with the KMS's sentence: a volume call answers in azote's codes.
func kmsRefusal(err error) error {
	if err == nil {
		return nil
	}
	var e *api.Error
	if !errors.As(err, &e) {
		return err
	}
	msg := "KMS: " + string(e.Code) + ": " + e.Message
	switch e.Code {
	case api.CodeKMSAccessDenied:
		return api.Errorf(api.CodeAccessDenied, "%s", msg)
	case api.CodeKMSNotFound, api.CodeKMSInvalidARN, api.CodeKMSValidation, api.CodeKMSInvalidKeyUsage, api.CodeKMSInvalidCiphertext:
		return refusal.New(refusal.ErrInvalidParameter, "%s", msg)
	case api.CodeKMSDisabled, api.CodeKMSInvalidState:
		return refusal.New(volumes.ErrIncorrectState, "%s", msg)
	}
	return err
}

// kmsEvent records a call the KMS made for one of azote's services, as
// the caller it acted for, invoked by the service.
func (c *Controller) kmsEvent(caller *api.Caller, name, keyARN string, data map[string]any) {
	if c.trail == nil {
		return
	}
	id := gateway.Identity(caller)
	id.InvokedBy, _ = data["invokedBy"].(string)
	delete(data, "invokedBy")
	rec := &audit.Record{
		EventTime: time.Now(), EventSource: api.KMSEventSource, EventName: name, AWSRegion: c.cfg.Region,
		SourceIPAddress: id.InvokedBy, UserAgent: id.InvokedBy, UserIdentity: id, RequestParameters: data,
		EventType: "AwsApiCall", ManagementEvent: true, RequestID: audit.NewUUID(),
		Resources: []audit.Resource{{ARN: keyARN, Type: "AWS::KMS::Key", AccountID: c.iam.AccountID()}},
	}
	if err := c.trail.Append(context.Background(), rec); err != nil {
		c.log.Error("audit append failed", "event", name, "err", err)
	}
}
