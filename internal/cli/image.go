package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/spf13/pflag"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/image"
)

var imageCommands = []command{
	{use: "build", short: "build an image from Debian's kernel package and upload it", build: imageBuild,
		example: "azote image build --name tools --binary /sbin/mke2fs\nazote image build --name debian --distro debian --packages curl,less --size 2G"},
	{use: "import", short: "upload a kernel and initramfs of your own as an image", build: imageImport,
		example: "azote image import --name mine --kernel vmlinuz --initrd initrd.img --cmdline 'console=ttyS0 panic=-1'"},
	{use: "list", short: "list images", build: imageList, example: "azote image list"},
	{use: "describe IMAGE", short: "show one image with its SHA-384 digests", build: imageDescribe, example: "azote image describe default"},
	{use: "delete IMAGE", short: "delete an image no instance uses", build: imageDelete, example: "azote image delete tools"},
}

func defaultCacheDir() string {
	if os.Geteuid() == 0 {
		return "/var/cache/azote"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "azote")
	}
	return filepath.Join(os.TempDir(), "azote-cache")
}

func defaultAgent() string {
	if exe, err := os.Executable(); err == nil {
		return filepath.Join(filepath.Dir(exe), "azote-agent")
	}
	return "azote-agent"
}

func imageBuild(e *env, fs *pflag.FlagSet) runFunc {
	name := fs.String("name", "default", "image name")
	kpkg := fs.String("kernel-package", image.DefaultKernelPackage, "Debian package with the kernel")
	agent := fs.String("agent", defaultAgent(), "static azote-agent binary to use as init")
	cache := fs.String("cache", defaultCacheDir(), "download and unpack cache")
	cmdline := fs.String("cmdline", image.DefaultCmdline, "kernel command line")
	mods := fs.String("modules", strings.Join(image.DefaultModules, ","), "kernel modules to include (dependencies are added)")
	var bins stringList
	fs.Var(&bins, "binary", "host executable to include with its libraries (repeatable), e.g. /sbin/mke2fs")
	script := fs.String("script", "", "shell script the agent runs after the guest is ready")
	distro := fs.String("distro", "", `"debian": a Debian root filesystem made with debootstrap, booted from the instance's root volume`)
	pkgs := fs.String("packages", "", "with --distro: Debian packages to add, comma-separated")
	size := fs.String("size", "2G", "with --distro: the root volume size the image is built for (the tree must fit)")
	mirror := fs.String("mirror", "", "with --distro: the Debian archive (default: the one the host's apt sources use)")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Image, error) {
		if !image.ValidName(*name) {
			return api.Image{}, usageError{msg: fmt.Sprintf("--name %q: use 1-63 letters, digits, '.', '_' or '-'", *name)}
		}
		if *distro != "" && *distro != "debian" {
			return api.Image{}, usageError{msg: fmt.Sprintf("--distro %q: only debian is known", *distro)}
		}
		if *distro == "" && (fs.Changed("packages") || fs.Changed("size") || fs.Changed("mirror")) {
			return api.Image{}, usageError{msg: "--packages, --size and --mirror go with --distro debian"}
		}
		rootSize, err := parseSize(*size)
		if err != nil {
			return api.Image{}, usageError{msg: "--size: " + err.Error()}
		}
		start := time.Now()
		var scriptData []byte
		if *script != "" {
			b, err := os.ReadFile(*script)
			if err != nil {
				return api.Image{}, err
			}
			scriptData = b
		}
		opts := image.BuildOptions{
			Binaries: bins, Script: scriptData,
			KernelPackage: *kpkg, AgentPath: *agent, CacheDir: *cache, Cmdline: *cmdline,
			Modules:  strings.Split(*mods, ","),
			Progress: func(s string) { e.progress("  %s", s) },
		}
		e.progress("building image %q ...", *name)
		var art *image.Artifacts
		if *distro == "debian" {
			var extra []string
			if *pkgs != "" {
				extra = strings.Split(*pkgs, ",")
			}
			// Not buildCancellable: a cancelled debootstrap must be
			// killed and its tree removed before the command ends.
			art, err = image.BuildDebian(ctx, image.DebianOptions{BuildOptions: opts, Packages: extra, RootSize: rootSize, Mirror: *mirror})
			if err != nil && ctx.Err() != nil {
				return api.Image{}, fmt.Errorf("cancelled before anything was uploaded; the build's temporary tree is removed")
			}
		} else {
			art, err = buildCancellable(ctx, opts)
		}
		if err != nil {
			return api.Image{}, err
		}
		resp, err := e.uploadImage(ctx, *name, art)
		if err != nil {
			return api.Image{}, err
		}
		if resp.Created {
			e.progress("image %s built in %.1f s", resp.Image.ID, time.Since(start).Seconds())
		} else {
			e.progress("image %s already existed with these exact contents", resp.Image.ID)
		}
		return resp.Image, nil
	}, showImage)
}

// uploadImage sends a built image's two blobs and records the image.
// Ctrl-C can end it between the two, or after both: what reached the host
// stays there, unused, until azoted's janitor deletes blobs no image uses
// an hour after their upload (controller.OrphanBlobRetention). The error
// of a cancelled upload says so and names the blobs, so that the user
// knows what was left and that it goes away by itself.
func (e *env) uploadImage(ctx context.Context, name string, art *image.Artifacts) (api.CreateImageResponse, error) {
	blobs := []imageBlob{
		{"kernel", image.SHA384Hex(art.Kernel), art.Kernel},
		{"initramfs", image.SHA384Hex(art.Initrd), art.Initrd},
	}
	rootfsSHA := ""
	if art.Rootfs != nil {
		rootfsSHA = image.SHA384Hex(art.Rootfs)
		blobs = append(blobs, imageBlob{"rootfs", rootfsSHA, art.Rootfs})
	}
	for i, b := range blobs {
		start := time.Now()
		e.progress("  uploading %s (%d KiB) ...", b.what, len(b.data)/1024)
		if err := e.client.PutBlob(ctx, b.sha384, b.data); err != nil {
			if ctx.Err() != nil {
				return api.CreateImageResponse{}, cancelledUpload(name, blobs[:i+1], false)
			}
			return api.CreateImageResponse{}, err
		}
		if len(b.data) > 1<<20 {
			e.progress("  uploaded %s in %.1f s", b.what, time.Since(start).Seconds())
		}
	}
	resp, err := e.client.CreateImage(ctx, api.CreateImageRequest{
		Name: name, KernelSHA384: blobs[0].sha384, InitrdSHA384: blobs[1].sha384, Cmdline: art.Cmdline, KernelVersion: art.KernelVersion,
		RootfsSHA384: rootfsSHA,
	})
	if err != nil && ctx.Err() != nil {
		return resp, cancelledUpload(name, blobs, true)
	}
	return resp, err
}

// imageBlob is one blob of an image build.
type imageBlob struct {
	what, sha384 string
	data         []byte
}

// errUploadCancelled is the error of an image build cancelled while
// uploading; its text says what the host keeps.
var errUploadCancelled = errors.New("image build cancelled")

// cancelledUpload tells what a cancelled upload left on the host: sent
// are the blobs whose upload began, the last of them cut short unless
// the cancel came while creating the image, which may then exist after
// all.
func cancelledUpload(name string, sent []imageBlob, creating bool) error {
	var b strings.Builder
	if creating {
		b.WriteString(" while the image was being created")
	} else {
		b.WriteString(" before the image was created")
	}
	b.WriteString("\nnote: the host keeps what was uploaded:")
	for i, s := range sent {
		fmt.Fprintf(&b, "\n  %-9s  SHA-384 %s", s.what, s.sha384)
		if i == len(sent)-1 && !creating {
			b.WriteString(" (cut short: kept only if the host got all of it)")
		}
	}
	if creating {
		fmt.Fprintf(&b, "\nIf image %s was created as the cancel arrived, 'azote image describe %s' shows it, and it uses them.", name, name)
	}
	b.WriteString("\nazoted deletes blobs that no image uses an hour after their upload; running the same build again re-uses them.")
	return fmt.Errorf("%w%s", errUploadCancelled, b.String())
}

func showImage(e *env, i api.Image) error {
	if e.structured() {
		return e.emit(i)
	}
	rootfsSize := "" // kv leaves out empty values: images without one
	if i.RootfsSHA384 != "" {
		rootfsSize = fmt.Sprintf("%d bytes", i.RootfsSize)
	}
	e.kv([][2]string{
		{"ID", i.ID}, {"Name", i.Name}, {"Kernel version", i.KernelVersion},
		{"Kernel SHA-384", i.KernelSHA384}, {"Kernel size", fmt.Sprintf("%d bytes", i.KernelSize)},
		{"Initrd SHA-384", i.InitrdSHA384}, {"Initrd size", fmt.Sprintf("%d bytes", i.InitrdSize)},
		{"Command line", i.Cmdline}, {"Command line SHA-384", i.CmdlineSHA384},
		{"Rootfs SHA-384", i.RootfsSHA384}, {"Rootfs size", rootfsSize},
		{"Created", i.CreatedAt.Format(time.RFC3339)},
	})
	return nil
}

func imageList(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) ([]api.Image, error) {
		return e.client.ListImages(ctx)
	}, showImages)
}

func showImages(e *env, list []api.Image) error {
	var rows [][]string
	for _, i := range list {
		rows = append(rows, []string{i.ID, i.Name, i.KernelVersion, fmt.Sprintf("%.1f", float64(i.KernelSize+i.InitrdSize+i.RootfsSize)/(1<<20)), ago(i.CreatedAt)})
	}
	return e.list(list, "ID\tNAME\tKERNEL\tSIZE_MIB\tCREATED", rows)
}

func imageDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Image, error) {
		return e.client.DescribeImage(ctx, pos[0])
	}, showImage)
}

func imageDelete(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		if err := e.client.DeleteImage(ctx, pos[0]); err != nil {
			return err
		}
		if e.structured() {
			return e.emit(map[string]string{"deleted": pos[0]})
		}
		fmt.Fprintf(e.stdout, "deleted image %s\n", pos[0])
		return nil
	}
}

// stringList collects a repeated flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (s *stringList) Type() string { return "PATH" }

// buildCancellable runs the local build, which knows no context, so that
// Ctrl-C ends the command at once: nothing has been uploaded yet, and the
// build writes only its download cache, which a later build reuses.
func buildCancellable(ctx context.Context, opts image.BuildOptions) (*image.Artifacts, error) {
	type result struct {
		art *image.Artifacts
		err error
	}
	done := make(chan result, 1)
	go func() {
		art, err := image.Build(opts)
		done <- result{art, err}
	}()
	select {
	case r := <-done:
		return r.art, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("cancelled before anything was uploaded")
	}
}

func imageImport(e *env, fs *pflag.FlagSet) runFunc {
	name := fs.String("name", "", "image name (required)")
	kernel := fs.String("kernel", "", "the kernel: an x86 bzImage (required)")
	initrd := fs.String("initrd", "", "the initramfs (required)")
	cmdline := fs.String("cmdline", image.DefaultCmdline, "kernel command line")
	return callThenShow(e, func(ctx context.Context, pos []string) (api.Image, error) {
		if !image.ValidName(*name) {
			return api.Image{}, usageError{msg: fmt.Sprintf("--name %q: use 1-63 letters, digits, '.', '_' or '-'", *name)}
		}
		if *kernel == "" || *initrd == "" {
			return api.Image{}, usageError{msg: "--kernel and --initrd are required"}
		}
		// Every check runs before the first byte is uploaded.
		art, err := image.LoadImport(*kernel, *initrd, *cmdline)
		if err != nil {
			return api.Image{}, err
		}
		e.progress("importing image %q: kernel %s", *name, art.KernelVersion)
		resp, err := e.uploadImage(ctx, *name, art)
		if err != nil {
			return api.Image{}, err
		}
		if resp.Created {
			e.progress("image %s imported", resp.Image.ID)
		} else {
			e.progress("image %s already existed with these exact contents", resp.Image.ID)
		}
		return resp.Image, nil
	}, showImage)
}
