package cli

import (
	"context"
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
		example: "azote image build --name tools --binary /sbin/mke2fs"},
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
	return func(ctx context.Context, pos []string) error {
		if !image.ValidName(*name) {
			return usageError{msg: fmt.Sprintf("--name %q: use 1-63 letters, digits, '.', '_' or '-'", *name)}
		}
		start := time.Now()
		var scriptData []byte
		if *script != "" {
			b, err := os.ReadFile(*script)
			if err != nil {
				return err
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
		art, err := buildCancellable(ctx, opts)
		if err != nil {
			return err
		}
		ksha, isha := image.SHA384Hex(art.Kernel), image.SHA384Hex(art.Initrd)
		e.progress("  uploading kernel (%d KiB) and initramfs (%d KiB)", len(art.Kernel)/1024, len(art.Initrd)/1024)
		if err := e.client.PutBlob(ctx, ksha, art.Kernel); err != nil {
			return err
		}
		if err := e.client.PutBlob(ctx, isha, art.Initrd); err != nil {
			return err
		}
		resp, err := e.client.CreateImage(ctx, api.CreateImageRequest{
			Name: *name, KernelSHA384: ksha, InitrdSHA384: isha, Cmdline: art.Cmdline, KernelVersion: art.KernelVersion,
		})
		if err != nil {
			return err
		}
		if resp.Created {
			e.progress("image %s built in %.1f s", resp.Image.ID, time.Since(start).Seconds())
		} else {
			e.progress("image %s already existed with these exact contents", resp.Image.ID)
		}
		return showImage(e, resp.Image)
	}
}

func showImage(e *env, i api.Image) error {
	if e.structured() {
		return e.emit(i)
	}
	e.kv([][2]string{
		{"ID", i.ID}, {"Name", i.Name}, {"Kernel version", i.KernelVersion},
		{"Kernel SHA-384", i.KernelSHA384}, {"Kernel size", fmt.Sprintf("%d bytes", i.KernelSize)},
		{"Initrd SHA-384", i.InitrdSHA384}, {"Initrd size", fmt.Sprintf("%d bytes", i.InitrdSize)},
		{"Command line", i.Cmdline}, {"Command line SHA-384", i.CmdlineSHA384},
		{"Created", i.CreatedAt.Format(time.RFC3339)},
	})
	return nil
}

func imageList(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		list, err := e.client.ListImages(ctx)
		if err != nil {
			return err
		}
		if e.structured() {
			return e.emit(list)
		}
		var rows [][]string
		for _, i := range list {
			rows = append(rows, []string{i.ID, i.Name, i.KernelVersion, fmt.Sprintf("%.1f", float64(i.KernelSize+i.InitrdSize)/(1<<20)), ago(i.CreatedAt)})
		}
		e.table("ID\tNAME\tKERNEL\tSIZE_MIB\tCREATED", rows)
		return nil
	}
}

func imageDescribe(e *env, fs *pflag.FlagSet) runFunc {
	return func(ctx context.Context, pos []string) error {
		img, err := e.client.DescribeImage(ctx, pos[0])
		if err != nil {
			return err
		}
		return showImage(e, img)
	}
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
