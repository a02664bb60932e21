package cardhost

import (
	"context"
	"io"
	"net"

	"github.com/azote/azote/internal/cards/cardproto"
)

// A card answers each connection to its metrics socket with its raw
// counters, once, and closes it. A card handles guest data and is not
// trusted: what it answers is checked against cardproto's schema, and
// the caller labels what it renders itself. ctx's deadline bounds the
// whole exchange.

// ScrapeBlk reads a blk card's metrics from its metrics socket.
func ScrapeBlk(ctx context.Context, sock string) (cardproto.BlkMetrics, error) {
	return scrape(ctx, sock, cardproto.ReadBlkMetrics)
}

// ScrapeNet reads a net card's metrics from its metrics socket.
func ScrapeNet(ctx context.Context, sock string) (cardproto.NetMetrics, error) {
	return scrape(ctx, sock, cardproto.ReadNetMetrics)
}

func scrape[M any](ctx context.Context, sock string, read func(io.Reader) (M, error)) (M, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		var zero M
		return zero, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return read(conn)
}
