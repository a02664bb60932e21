package controller

import (
	"context"

	"github.com/azote/azote/internal/api"
)

// The key pair part of the façade (gateway.KeyPairBackend).

// ImportKeyPair implements gateway.KeyPairBackend.
func (c *Controller) ImportKeyPair(_ context.Context, r api.ImportKeyPairRequest) (api.KeyPair, error) {
	return c.keyPairs.Import(r)
}

// CreateKeyPair implements gateway.KeyPairBackend.
func (c *Controller) CreateKeyPair(_ context.Context, r api.CreateKeyPairRequest) (api.CreateKeyPairResponse, error) {
	return c.keyPairs.Create(r)
}

// ListKeyPairs implements gateway.KeyPairBackend.
func (c *Controller) ListKeyPairs(context.Context) ([]api.KeyPair, error) { return c.keyPairs.List() }

// DescribeKeyPair implements gateway.KeyPairBackend.
func (c *Controller) DescribeKeyPair(_ context.Context, id string) (api.KeyPair, error) {
	return c.keyPairs.Resolve(id)
}

// DeleteKeyPair implements gateway.KeyPairBackend.
func (c *Controller) DeleteKeyPair(_ context.Context, id string) (api.KeyPair, error) {
	return c.keyPairs.Delete(id)
}

// InstanceUserData implements gateway.KeyPairBackend.
func (c *Controller) InstanceUserData(ctx context.Context, id string) (api.UserDataResponse, error) {
	return c.instances.UserData(ctx, id)
}

// IdentityKey implements gateway.KeyPairBackend.
func (c *Controller) IdentityKey(context.Context) ([]byte, error) { return c.identityPEM, nil }
