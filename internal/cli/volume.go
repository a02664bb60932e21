package cli

import (
	"context"
	"fmt"
	"github.com/spf13/pflag"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
)

var volumeCommands = []command{
	{use: "create", short: "create a volume (--size 1G --kind instance-store|persistent)", build: volumeCreate,
		example: "azote volume create --name data --size 1G --tag env=dev"},
	volumeImportCommand,
	{use: "list", short: "list volumes", build: volumeList, example: "azote volume list -o yaml"},
	{use: "describe VOLUME", short: "show one volume (by id or name)", build: volumeDescribe, example: "azote volume describe data"},
	{use: "modify VOLUME", short: "change a volume's attributes (--deletion-protection)", build: volumeModify,
		example: "azote volume modify data --deletion-protection=true"},
	{use: "delete VOLUME", short: "delete a volume (persistent: recoverable unless --now)", build: volumeDelete,
		example: "azote volume delete data --now"},
	{use: "restore VOLUME", short: "restore a deleted persistent volume", build: volumeRestore, example: "azote volume restore data"},
	{use: "attach VOLUME", short: "attach a volume to a stopped instance", build: volumeAttach,
		example: "azote volume attach data --instance web --read-only"},
	{use: "detach VOLUME", short: "detach a volume from a stopped instance", build: volumeDetach, example: "azote volume detach data"},
}

// parseSize reads 512M, 4G, 1T or a byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "T"):
		mult, s = 1<<40, strings.TrimSuffix(s, "T")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a number with an optional K, M, G or T suffix", s)
	}
	return n * mult, nil
}

func volumeCreate(e *env, fs *pflag.FlagSet) runFunc {
	var req api.CreateVolumeRequest
	size := fs.String("size", "", "size, e.g. 1G")
	fs.StringVar(&req.Name, "name", "", "volume name (default: its id)")
	fs.StringVar(&req.Kind, "kind", api.VolumePersistent, "instance-store or persistent")
	fs.Int64Var(&req.IOPS, "iops", 0, "I/O operations per second limit (0: none)")
	fs.Int64Var(&req.ThroughputMiB, "throughput", 0, "MiB/s limit (0: none)")
	fs.BoolVar(&req.DeletionProtection, "deletion-protection", false, "refuse delete until turned off")
	fs.BoolVar(&req.Plaintext, "plaintext", false, "store sectors unencrypted (benchmarks only)")
	fs.StringVar(&req.KMSKeyID, "kms-key-id", "", "KMS key (id, ARN or alias) the volume's data key is made under (default: the account's alias/azote/volumes, made on first use)")
	fs.BoolVar(&req.DirectIO, "direct-io", false, "bypass the host page cache (O_DIRECT); the guest caches for itself")
	tags := tagFlag{}
	fs.Var(tags, "tag", "KEY=VALUE label (repeat for more); policies test it as aws:ResourceTag/KEY")
	fs.StringVar(&req.Image, "image", "", "fill with an ext4 root filesystem holding this image's tree (persistent only)")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Volume, error) {
		if len(tags) > 0 {
			req.Tags = tags
		}
		if *size == "" {
			return api.Volume{}, usageError{msg: "--size is required"}
		}
		n, err := parseSize(*size)
		if err != nil {
			return api.Volume{}, usageError{msg: err.Error()}
		}
		req.SizeBytes = n
		if req.Image == "" {
			return e.client.CreateVolume(ctx, req)
		}
		return e.createFromImage(ctx, req)
	}, showVolume)
}

// progressEvery is how often a long operation says it is still going.
var progressEvery = 5 * time.Second

// createFromImage creates a volume filled from an image, which takes a
// while: it says so every few seconds, and Ctrl-C cancels it. azoted
// records a volume only once its fill is complete, and removes the file
// of a fill whose request went away; should the cancel arrive after the
// record was made, the named volume this call created is deleted, so
// nothing is left half-made.
func (e *env) createFromImage(ctx context.Context, req api.CreateVolumeRequest) (api.Volume, error) {
	start := time.Now()
	type answer struct {
		v   api.Volume
		err error
	}
	done := make(chan answer, 1)
	go func() {
		v, err := e.client.CreateVolume(ctx, req)
		done <- answer{v, err}
	}()
	// A quick fill says nothing: only one that takes a while reports,
	// so stderr holds just the error line when the image is refused.
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	ticked := false
	for {
		select {
		case a := <-done:
			if a.err == nil {
				if ticked {
					e.progress("%s filled in %.1f s", a.v.ID, time.Since(start).Seconds())
				}
				return a.v, nil
			}
			if ctx.Err() == nil {
				return a.v, a.err
			}
			return a.v, e.undoCreate(req, start)
		case <-tick.C:
			ticked = true
			e.progress("filling the volume from image %s: %.0f s (Ctrl-C cancels)", req.Image, time.Since(start).Seconds())
		}
	}
}

// undoCreate removes what a cancelled create may have left.
func (e *env) undoCreate(req api.CreateVolumeRequest, start time.Time) error {
	cancelled := fmt.Errorf("cancelled: azoted discards a volume whose fill did not finish")
	if req.Name == "" {
		return cancelled
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := e.client.DescribeVolume(ctx, req.Name)
	if err != nil || v.CreatedAt.Before(start) || v.SourceImage == "" {
		return cancelled // nothing was recorded (or not by this call)
	}
	if _, err := e.client.DeleteVolume(ctx, v.ID, true); err != nil {
		return fmt.Errorf("cancelled, but volume %s was created and could not be deleted: %w", v.ID, err)
	}
	return fmt.Errorf("cancelled: volume %s, created as the cancel arrived, was deleted", v.ID)
}

func showVolume(e *env, v api.Volume) error {
	if e.structured() {
		return e.emit(v)
	}
	enc := "no (plaintext)"
	if v.Encrypted {
		enc = "yes, " + v.Cipher
	}
	pairs := [][2]string{
		{"ID", v.ID}, {"Name", v.Name}, {"Kind", v.Kind}, {"State", v.State},
		{"Size", fmt.Sprintf("%d bytes (%.1f GiB)", v.SizeBytes, float64(v.SizeBytes)/(1<<30))},
		{"Encrypted", enc}, {"KMS key", v.KMSKeyID}, {"Host cache", hostCache(v.DirectIO)}, {"Tags", formatTags(v.Tags)}, {"Attached to", v.AttachedTo}, {"Source image", v.SourceImage},
		{"Deletion protection", strconv.FormatBool(v.DeletionProtection)},
		{"Created", v.CreatedAt.Format(time.RFC3339)},
	}
	if v.IOPS > 0 {
		pairs = append(pairs, [2]string{"IOPS limit", strconv.FormatInt(v.IOPS, 10)})
	}
	if v.ThroughputMiB > 0 {
		pairs = append(pairs, [2]string{"Throughput limit", fmt.Sprintf("%d MiB/s", v.ThroughputMiB)})
	}
	if v.PurgeAt != nil {
		pairs = append(pairs, [2]string{"Purged at", v.PurgeAt.Format(time.RFC3339) + " unless restored"})
	}
	e.kv(pairs)
	return nil
}

func volumeList(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.Volume, error) {
		return e.client.ListVolumes(ctx)
	}, showVolumes)
}

func showVolumes(e *env, list []api.Volume) error {
	var rows [][]string
	for _, v := range list {
		rows = append(rows, []string{v.ID, v.Name, v.Kind, v.State, fmt.Sprintf("%.2f", float64(v.SizeBytes)/(1<<30)),
			strconv.FormatBool(v.Encrypted), v.AttachedTo, ago(v.CreatedAt)})
	}
	return e.list(list, "ID\tNAME\tKIND\tSTATE\tSIZE_GIB\tENCRYPTED\tATTACHED_TO\tCREATED", rows)
}

func volumeDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Volume, error) {
		return e.client.DescribeVolume(ctx, pos[0])
	}, showVolume)
}

func volumeModify(e *env, fs *pflag.FlagSet) runFunc {
	var req api.ModifyVolumeRequest
	fs.Func("deletion-protection", "true or false", setBool(&req.DeletionProtection))
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Volume, error) {
		if req.DeletionProtection == nil {
			return api.Volume{}, usageError{msg: "nothing to change: give --deletion-protection=true|false"}
		}
		return e.client.ModifyVolume(ctx, pos[0], req)
	}, showVolume)
}

func volumeDelete(e *env, fs *pflag.FlagSet) runFunc {
	now := fs.Bool("now", false, "destroy at once (crypto-erase) instead of keeping it recoverable")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Volume, error) {
		return e.client.DeleteVolume(ctx, pos[0], *now)
	}, showVolume)
}

func volumeRestore(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Volume, error) {
		return e.client.VolumeAction(ctx, pos[0], "restore", nil)
	}, showVolume)
}

func volumeAttach(e *env, fs *pflag.FlagSet) runFunc {
	var req api.AttachVolumeRequest
	fs.StringVar(&req.Instance, "instance", "", "instance id or name (stopped)")
	fs.BoolVar(&req.ReadOnly, "read-only", false, "attach read-only")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Volume, error) {
		if req.Instance == "" {
			return api.Volume{}, usageError{msg: "--instance is required"}
		}
		return e.client.VolumeAction(ctx, pos[0], "attach", req)
	}, showVolume)
}

func volumeDetach(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Volume, error) {
		return e.client.VolumeAction(ctx, pos[0], "detach", nil)
	}, showVolume)
}

// setBool sets an optional true|false flag of a modify verb: *p stays
// nil unless the flag is given, so the verb changes only what it is told.
func setBool(p **bool) func(string) error {
	return func(s string) error {
		b, err := strconv.ParseBool(s)
		*p = &b
		return err
	}
}

// volumeFlag collects repeated --volume VOL[:ro] flags.
type volumeFlag []api.VolumeAttachment

func (v *volumeFlag) String() string { return "" }
func (v *volumeFlag) Set(s string) error {
	ref, mode, _ := strings.Cut(s, ":")
	if ref == "" || (mode != "" && mode != "ro" && mode != "rw") {
		return fmt.Errorf("want VOLUME or VOLUME:ro")
	}
	*v = append(*v, api.VolumeAttachment{Volume: ref, ReadOnly: mode == "ro"})
	return nil
}

func hostCache(direct bool) string {
	if direct {
		return "bypassed (O_DIRECT)"
	}
	return "used"
}

// tagFlag collects repeated --tag KEY=VALUE flags.
type tagFlag map[string]string

func (t tagFlag) String() string { return formatTags(t) }

func (t tagFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	if _, dup := t[k]; dup {
		return fmt.Errorf("tag %q given twice", k)
	}
	t[k] = val
	return nil
}

func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+tags[k])
	}
	return strings.Join(parts, ",")
}

func (v *volumeFlag) Type() string { return "VOLUME[:ro]" }
func (t tagFlag) Type() string     { return "KEY=VALUE" }
