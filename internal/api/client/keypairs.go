package client

import (
	"context"
	"io"
	"net/url"

	"github.com/azote/azote/internal/api"
)

// Key pairs, an instance's user data and the host's identity key. A ref
// is an id or a name.

func (c *Client) ImportKeyPair(ctx context.Context, r api.ImportKeyPairRequest) (api.KeyPair, error) {
	var v api.KeyPair
	return v, c.do(ctx, "POST", "/v1/key-pairs/import", jsonBody(r), &v)
}

// CreateKeyPair returns the new pair with its private key, which azoted
// does not keep.
func (c *Client) CreateKeyPair(ctx context.Context, r api.CreateKeyPairRequest) (api.CreateKeyPairResponse, error) {
	var v api.CreateKeyPairResponse
	return v, c.do(ctx, "POST", "/v1/key-pairs", jsonBody(r), &v)
}

func (c *Client) ListKeyPairs(ctx context.Context) ([]api.KeyPair, error) {
	var l []api.KeyPair
	return l, c.do(ctx, "GET", "/v1/key-pairs", nil, &l)
}

func (c *Client) DescribeKeyPair(ctx context.Context, ref string) (api.KeyPair, error) {
	var v api.KeyPair
	return v, c.do(ctx, "GET", "/v1/key-pairs/"+url.PathEscape(ref), nil, &v)
}

func (c *Client) DeleteKeyPair(ctx context.Context, ref string) (api.KeyPair, error) {
	var v api.KeyPair
	return v, c.do(ctx, "DELETE", "/v1/key-pairs/"+url.PathEscape(ref), nil, &v)
}

// InstanceUserData returns the user data an instance was launched with.
func (c *Client) InstanceUserData(ctx context.Context, ref string) (api.UserDataResponse, error) {
	var v api.UserDataResponse
	return v, c.do(ctx, "GET", "/v1/instances/"+url.PathEscape(ref)+"/user-data", nil, &v)
}

// IdentityKey returns the PEM public key that signs instance identity
// documents.
func (c *Client) IdentityKey(ctx context.Context) ([]byte, error) {
	req, err := c.newRequest(ctx, "GET", "/v1/host/identity-key", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, errorOf(resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
}
