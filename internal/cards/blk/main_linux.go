package blk

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/channel"
	"github.com/azote/azote/internal/cards/seccomp"
	"github.com/azote/azote/internal/xts"
)

// Main is `azote-card blk`: it takes its configuration and key from the
// private channel, the backing file from an inherited descriptor, and
// serves the vhost-user socket until it is told to stop.
func Main(args []string) int {
	fs := flag.NewFlagSet("azote-card blk", flag.ContinueOnError)
	sock := fs.String("socket", "", "vhost-user socket to listen on")
	backingFD := fs.Int("backing-fd", 3, "inherited descriptor of the backing file")
	channelFD := fs.Int("channel-fd", 4, "inherited descriptor of the private channel")
	metricsSock := fs.String("metrics-socket", "", "unix socket answering with Prometheus metrics")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("card", "blk")
	if err := run(*sock, *backingFD, *channelFD, *metricsSock, log); err != nil {
		log.Error("card failed", "err", err)
		return 1
	}
	return 0
}

func run(sock string, backingFD, channelFD int, metricsSock string, log *slog.Logger) error {
	if sock == "" {
		return fmt.Errorf("--socket is required")
	}
	ch := os.NewFile(uintptr(channelFD), "channel")
	if ch == nil {
		return fmt.Errorf("no channel on fd %d", channelFD)
	}
	cfg, key, err := channel.ReceiveBlk(ch)
	if err != nil {
		return fmt.Errorf("reading the channel: %w", err)
	}
	var cipher *xts.Cipher
	if cfg.Encrypted {
		cipher, err = xts.New(key)
		clear(key)
		if err != nil {
			return fmt.Errorf("volume key: %w", err)
		}
		defer cipher.Wipe()
	} else if len(key) != 0 {
		clear(key)
		return fmt.Errorf("a key was sent for a plaintext volume")
	}
	f := os.NewFile(uintptr(backingFD), "backing")
	if f == nil {
		return fmt.Errorf("no backing file on fd %d", backingFD)
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("backing fd: %w", err)
	}
	if !cfg.ReadOnly && fl&unix.O_ACCMODE == unix.O_RDONLY {
		return fmt.Errorf("backing file is read-only but the volume is not")
	}
	id := cfg.VolumeID
	if len(id) > idLen {
		id = id[:idLen] // GET_ID answers at most 20 bytes
	}
	dcfg := Config{File: f, ReadOnly: cfg.ReadOnly, Queues: cfg.Queues, Cipher: cipher, ID: id}
	if cfg.IOPS > 0 || cfg.BytesPerS > 0 {
		dcfg.Limiter = NewTokenBucket(cfg.IOPS, cfg.BytesPerS)
	}
	d, err := New(dcfg)
	if err != nil {
		return err
	}
	defer d.Close()
	l, err := Listen(sock)
	if err != nil {
		return err
	}
	if metricsSock != "" {
		ml, err := Listen(metricsSock)
		if err != nil {
			return err
		}
		go serveMetrics(ml, d, cfg.VolumeID)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	// From here on the card only serves what it holds: no new sockets, no
	// files opened, no processes.
	if err := seccomp.Install(); err != nil {
		return err
	}
	go func() {
		<-sigs
		l.Close()
	}()
	log.Info("serving", "volume", cfg.VolumeID, "sectors", d.Capacity(), "queues", cfg.Queues,
		"read_only", cfg.ReadOnly, "encrypted", cfg.Encrypted)
	return Serve(d, l, log)
}

func serveMetrics(l *net.UnixListener, d *Device, volume string) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		d.Metrics.WritePrometheus(c, volume)
		c.Close()
	}
}
