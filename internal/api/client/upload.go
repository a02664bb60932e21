package client

import (
	"context"
	"io"
	"net/url"
	"strconv"

	"github.com/azote/azote/internal/api"
)

// sizedBody is an upload body whose length is known before it is read:
// it is sent with a Content-Length, so the server can tell a body cut
// short from a whole one.
type sizedBody struct {
	io.Reader
	n int64
}

// ImportVolume makes a volume from a raw disk: body must carry exactly
// r.Length bytes whose SHA-256 is r.SHA256. The bytes are streamed, not
// held; cancelling ctx breaks the upload off, and azoted then removes
// the volume.
func (c *Client) ImportVolume(ctx context.Context, r api.ImportVolumeRequest, body io.Reader) (api.Volume, error) {
	q := url.Values{"length": {strconv.FormatInt(r.Length, 10)}, "sha256": {r.SHA256}}
	if r.Name != "" {
		q.Set("name", r.Name)
	}
	if r.SizeBytes != 0 {
		q.Set("size_bytes", strconv.FormatInt(r.SizeBytes, 10))
	}
	if r.Plaintext {
		q.Set("plaintext", "true")
	}
	if r.DeletionProtection {
		q.Set("deletion_protection", "true")
	}
	var out api.Volume
	return out, c.do(ctx, "POST", api.VolumeImportPath+"?"+q.Encode(), sizedBody{body, r.Length}, &out)
}
