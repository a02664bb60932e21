package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/azote/azote/internal/api"
)

// rawUpload says whether r is an upload whose body its operation reads
// as it goes (an image blob, a volume import) instead of the gateway up
// front: such a body may be large, is sent UNSIGNED-PAYLOAD, gets the
// upload rate's read deadline and is not kept in the audit record. Each
// checks its own bytes: a blob its SHA-384, an import the SHA-256 the
// fill card verifies.
func rawUpload(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/blobs/") ||
		r.Method == http.MethodPost && r.URL.Path == api.VolumeImportPath
}

// importVolumeRoute is POST /v1/volumes/import, the Operation
// compute:ImportVolume on volume/* (an action of its own, as EC2's
// ImportVolume: a policy that allows creating empty volumes does not
// let a caller bring a disk in). Its parameters are the query
// (api.ImportVolumeRequest), its body the raw disk, which goes through
// azoted to the fill card unstored; azote:Encrypted is a request key, as
// for CreateVolume.
func (h *handler) importVolumeRoute() *route {
	return &route{pattern: "POST " + api.VolumeImportPath, rest: true, body: bodyRaw, op: &api.Operation{
		Name: "compute:ImportVolume", Resource: func(context.Context, any) (string, error) { return h.arn("compute", "volume/*"), nil },
		Conditions: func(_ context.Context, req any) map[string][]string {
			plain := rc(req).r.URL.Query().Get("plaintext")
			return map[string][]string{"azote:encrypted": {strconv.FormatBool(plain != "true" && plain != "1")}}
		},
		Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
			q, err := importQuery(rc(req).r.URL.Query())
			if err != nil {
				return nil, err
			}
			return h.b.ImportVolume(ctx, q, rc(req).r.Body)
		}}}
}

// importQuery reads an import's parameters; an unknown one is refused,
// as an unknown JSON field is.
func importQuery(v url.Values) (api.ImportVolumeRequest, error) {
	var q api.ImportVolumeRequest
	for k, vals := range v {
		if len(vals) != 1 {
			return q, api.Errorf(api.CodeInvalidParameter, "query parameter %q given %d times", k, len(vals))
		}
		s := vals[0]
		var err error
		switch k {
		case "name":
			q.Name = s
		case "sha256":
			q.SHA256 = s
		case "length":
			q.Length, err = strconv.ParseInt(s, 10, 64)
		case "size_bytes":
			q.SizeBytes, err = strconv.ParseInt(s, 10, 64)
		case "plaintext":
			q.Plaintext, err = strconv.ParseBool(s)
		case "deletion_protection":
			q.DeletionProtection, err = strconv.ParseBool(s)
		default:
			return q, api.Errorf(api.CodeInvalidParameter, "unknown query parameter %q (want name, size_bytes, length, sha256, plaintext, deletion_protection)", k)
		}
		if err != nil {
			return q, api.Errorf(api.CodeInvalidParameter, "query parameter %s: %q is not a valid value", k, s)
		}
	}
	if q.Length <= 0 || q.SHA256 == "" {
		return q, api.Errorf(api.CodeInvalidParameter, "an import needs length (the body's bytes) and sha256 (their digest)")
	}
	return q, nil
}
