package controller

import (
	"context"
	"io"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/instances"
	"github.com/azote/azote/internal/gateway"
)

// The façade: gateway.Backend, each call handed to the owner of its
// records. The gateway has already authorised the call on the ids it
// passes; the owners refuse with their own errors, which the gateway maps
// to wire codes (gateway/codes.go).

// RunInstance implements gateway.Backend.
func (c *Controller) RunInstance(ctx context.Context, r api.RunInstanceRequest) (api.Instance, error) {
	return c.instances.Run(ctx, r)
}

// ListInstances implements gateway.Backend.
func (c *Controller) ListInstances(ctx context.Context) ([]api.Instance, error) {
	return c.instances.List(ctx)
}

// DescribeInstance implements gateway.Backend.
func (c *Controller) DescribeInstance(ctx context.Context, ref string, after uint64, wait time.Duration) (api.Instance, error) {
	return c.instances.Describe(ctx, ref, after, wait)
}

// ModifyInstance implements gateway.Backend.
func (c *Controller) ModifyInstance(ctx context.Context, ref string, r api.ModifyInstanceRequest) (api.Instance, error) {
	return c.instances.Modify(ctx, ref, r)
}

// StopInstance implements gateway.Backend.
func (c *Controller) StopInstance(ctx context.Context, ref string, r api.StopInstanceRequest) (api.Instance, error) {
	return c.instances.Stop(ctx, ref, r)
}

// StartInstance implements gateway.Backend.
func (c *Controller) StartInstance(ctx context.Context, ref string) (api.Instance, error) {
	return c.instances.Start(ctx, ref)
}

// RebootInstance implements gateway.Backend.
func (c *Controller) RebootInstance(ctx context.Context, ref string) (api.Instance, error) {
	return c.instances.Reboot(ctx, ref)
}

// TerminateInstance implements gateway.Backend.
func (c *Controller) TerminateInstance(ctx context.Context, ref string) (api.Instance, error) {
	return c.instances.Terminate(ctx, ref)
}

// Console implements gateway.Backend.
func (c *Controller) Console(ctx context.Context, ref string, tail int64, follow bool, w io.Writer, flush func()) error {
	return c.instances.Console(ctx, ref, tail, follow, w, flush)
}

// Exec implements gateway.ExecBackend.
func (c *Controller) Exec(ctx context.Context, id string, req agent.OpenRequest) (gateway.ExecSession, error) {
	s, err := c.instances.Exec(ctx, id, req)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// PutBlob implements gateway.Backend.
func (c *Controller) PutBlob(_ context.Context, sha384 string, r io.Reader) error {
	return c.images.PutBlob(sha384, r)
}

// CreateImage implements gateway.Backend.
func (c *Controller) CreateImage(_ context.Context, r api.CreateImageRequest) (api.CreateImageResponse, error) {
	return c.images.Create(r)
}

// ListImages implements gateway.Backend.
func (c *Controller) ListImages(context.Context) ([]api.Image, error) { return c.images.List() }

// DescribeImage implements gateway.Backend.
func (c *Controller) DescribeImage(_ context.Context, ref string) (api.Image, error) {
	return c.images.Resolve(ref)
}

// DeleteImage implements gateway.Backend: an image that any instance
// other than a terminated one uses cannot be deleted.
func (c *Controller) DeleteImage(_ context.Context, ref string) (string, error) {
	return c.images.Delete(ref, instances.ImageUserTx)
}

// CreateVolume implements gateway.Backend.
func (c *Controller) CreateVolume(ctx context.Context, r api.CreateVolumeRequest) (api.Volume, error) {
	return c.volumes.Create(ctx, r)
}

// ListVolumes implements gateway.Backend.
func (c *Controller) ListVolumes(context.Context) ([]api.Volume, error) { return c.volumes.List() }

// DescribeVolume implements gateway.Backend.
func (c *Controller) DescribeVolume(_ context.Context, ref string) (api.Volume, error) {
	v, err := c.volumes.Resolve(ref)
	return v.Volume, err
}

// ModifyVolume implements gateway.Backend.
func (c *Controller) ModifyVolume(_ context.Context, ref string, r api.ModifyVolumeRequest) (api.Volume, error) {
	return c.volumes.Modify(ref, r)
}

// DeleteVolume implements gateway.Backend.
func (c *Controller) DeleteVolume(_ context.Context, ref string, now bool) (api.Volume, error) {
	return c.volumes.Delete(ref, now)
}

// RestoreVolume implements gateway.Backend.
func (c *Controller) RestoreVolume(_ context.Context, ref string) (api.Volume, error) {
	return c.volumes.Restore(ref)
}

// AttachVolume implements gateway.Backend: attachments are the instance
// owner's, which claims the volume inside its own transaction.
func (c *Controller) AttachVolume(ctx context.Context, ref string, r api.AttachVolumeRequest) (api.Volume, error) {
	return c.instances.AttachVolume(ctx, ref, r)
}

// DetachVolume implements gateway.Backend.
func (c *Controller) DetachVolume(ctx context.Context, ref string) (api.Volume, error) {
	return c.instances.DetachVolume(ctx, ref)
}

// ResolveID implements gateway.Backend: the gateway authorises a call on
// the id found here and hands the controller that id, not the ref.
func (c *Controller) ResolveID(_ context.Context, kind, ref string) (string, map[string]string, bool) {
	switch kind {
	case "instance":
		if rec, err := c.instances.Resolve(ref); err == nil {
			return rec.ID, rec.Tags, true
		}
	case "volume":
		if v, err := c.volumes.Resolve(ref); err == nil {
			return v.ID, v.Tags, true
		}
	case "image":
		if im, err := c.images.Resolve(ref); err == nil {
			return im.ID, nil, true
		}
	case "key-pair":
		if kp, err := c.keyPairs.Resolve(ref); err == nil {
			return kp.ID, kp.Tags, true
		}
	default:
		return c.resolveNetworkID(kind, ref)
	}
	return ref, nil, false
}
