package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"

	"github.com/azote/azote/internal/api"
)

// KeyPairBackend is the part of Backend that serves key pairs and what a
// guest is given at launch beside them: an instance's user data and the
// host key that signs its identity document.
type KeyPairBackend interface {
	ImportKeyPair(ctx context.Context, r api.ImportKeyPairRequest) (api.KeyPair, error)
	// CreateKeyPair returns the new pair's private key, which is not
	// kept anywhere.
	CreateKeyPair(ctx context.Context, r api.CreateKeyPairRequest) (api.CreateKeyPairResponse, error)
	ListKeyPairs(ctx context.Context) ([]api.KeyPair, error)
	DescribeKeyPair(ctx context.Context, id string) (api.KeyPair, error)
	DeleteKeyPair(ctx context.Context, id string) (api.KeyPair, error)
	// InstanceUserData returns the user data of instance id.
	InstanceUserData(ctx context.Context, id string) (api.UserDataResponse, error)
	// IdentityKey is the public key (PEM) that signs instance identity
	// documents.
	IdentityKey(ctx context.Context) ([]byte, error)
}

// kindKeyPair is the kind of a key pair; its ARN is compute's
// key-pair/ID (EC2 names it by name; azote by the id the call was
// authorised on, as its other nouns).
const kindKeyPair = "key-pair"

// keyPairRoutes are the routes of key pairs, of an instance's user data
// and of the host's identity key.
func (h *handler) keyPairRoutes() []*route {
	b := h.b
	star := func(context.Context, any) (string, error) { return "*", nil }
	all := func(context.Context, any) (string, error) { return h.arn("compute", "key-pair/*"), nil }
	host := func(context.Context, any) (string, error) { return h.arn("compute", "host/"+h.hostName), nil }
	kp, inst := h.resolve(kindKeyPair), h.resolve(kindInstance)
	rest := func(pattern string, bd body, op *api.Operation) *route {
		return &route{pattern: pattern, op: op, rest: true, body: bd}
	}
	restJSON := func(pattern string, newBody func() any, op *api.Operation) *route {
		return &route{pattern: pattern, op: op, rest: true, body: bodyJSON, newBody: newBody}
	}
	return []*route{
		restJSON("POST /v1/key-pairs/import", newOf[api.ImportKeyPairRequest], &api.Operation{Name: "compute:ImportKeyPair",
			Resource: all, Conditions: h.bodyKeys(networkKeys),
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				return b.ImportKeyPair(ctx, *rc(req).body.(*api.ImportKeyPairRequest))
			}}),
		restJSON("POST /v1/key-pairs", newOf[api.CreateKeyPairRequest], &api.Operation{Name: "compute:CreateKeyPair",
			Resource: all, Conditions: h.bodyKeys(networkKeys),
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				return b.CreateKeyPair(ctx, *rc(req).body.(*api.CreateKeyPairRequest))
			}}),
		rest("GET /v1/key-pairs", bodyIgnored, &api.Operation{Name: "compute:DescribeKeyPairs", ReadOnly: true, Resource: star,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) { return b.ListKeyPairs(ctx) }}),
		rest("GET /v1/key-pairs/{ref}", bodyIgnored, &api.Operation{Name: "compute:DescribeKeyPairs", ReadOnly: true, Resource: kp,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.KeyPair, error) {
				return b.DescribeKeyPair(ctx, id)
			})}),
		rest("DELETE /v1/key-pairs/{ref}", bodyIgnored, &api.Operation{Name: "compute:DeleteKeyPair", Resource: kp,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.KeyPair, error) {
				return b.DeleteKeyPair(ctx, id)
			})}),

		// EC2 reads user data with DescribeInstanceAttribute.
		rest("GET /v1/instances/{ref}/user-data", bodyIgnored, &api.Operation{Name: "compute:DescribeInstanceAttribute", ReadOnly: true,
			Resource: inst,
			Do: onTarget(func(ctx context.Context, id string, _ *restCall) (api.UserDataResponse, error) {
				return b.InstanceUserData(ctx, id)
			})}),
		rest("GET /v1/host/identity-key", bodyIgnored, &api.Operation{Name: "compute:DescribeHost", ReadOnly: true, Resource: host,
			Do: func(ctx context.Context, _ *api.Caller, _ any) (any, error) {
				pem, err := b.IdentityKey(ctx)
				if err != nil {
					return nil, err
				}
				return rawResult{contentType: "application/x-pem-file", data: pem}, nil
			}}),
	}
}

// runKeyPairAlso authorises a launch on its key pair (compute:RunInstances
// on it, as EC2 evaluates RunInstances on the key pair), replacing its
// ref with its id.
func (h *handler) runKeyPairAlso(ctx context.Context, c *restCall, q *api.RunInstanceRequest) []string {
	if q.KeyName == "" {
		return nil
	}
	return []string{h.alsoRef(ctx, c, kindKeyPair, &q.KeyName)}
}

// redactUserData replaces the user data of a launch's request, as the
// trail keeps it, by its digest and size: user data is the caller's to
// read (and often holds what should not be in a trail), its digest is
// what the launch measured.
func redactUserData(params map[string]any) {
	body, ok := params["body"].(map[string]any)
	if !ok {
		return
	}
	s, ok := body["user_data"].(string)
	if !ok {
		if _, present := body["user_data"]; present {
			body["user_data"] = "<removed>"
		}
		return
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		body["user_data"] = "<removed>"
		return
	}
	sum := sha256.Sum256(data)
	body["user_data"] = map[string]any{"sha256": hex.EncodeToString(sum[:]), "bytes": len(data)}
}

// summarizeKeyPair keeps the identifying fields of a key pair for its
// audit record: never a private key.
func summarizeKeyPair(out any) (map[string]any, bool) {
	var v api.KeyPair
	switch o := out.(type) {
	case api.KeyPair:
		v = o
	case api.CreateKeyPairResponse:
		v = o.KeyPair
	default:
		return nil, false
	}
	return map[string]any{"id": v.ID, "key_name": v.KeyName, "key_type": v.KeyType, "key_fingerprint": v.KeyFingerprint}, true
}
