package etcd

import (
	"context"
	"time"

	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/store/watchq"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchBacklog bounds the changes held for one watcher that is not
// reading; past it the watcher gets a Resync instead.
const watchBacklog = 1024

// Watch implements store.Watcher: it reports the changes to table made by
// any client of the cluster. It learns the cluster's current revision
// first (bounded by Config.Timeout) and reports every change after it.
// When it cannot, or when a reconnect finds the history it needs
// compacted, the receiver gets a Resync. An invalid table name, or a
// closed store, gives a closed channel.
func (s *Store) Watch(ctx context.Context, table string) <-chan store.Change {
	out := make(chan store.Change)
	if checkTable(table) != nil || s.ctx.Err() != nil {
		close(out)
		return out
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	rev, _ := s.currentRevision(ctx) // 0 when unavailable: the loop retries and resyncs
	q := watchq.New[store.Change](watchBacklog)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		q.Run(ctx, out, store.Change{Table: table, Resync: true})
	}()
	go func() {
		defer s.wg.Done()
		defer stop()
		defer cancel()
		s.watch(ctx, table, rev, q)
	}()
	return out
}

func (s *Store) currentRevision(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, s.mapErr(ctx, "watch", err)
	}
	return resp.Header.Revision, nil
}

// watch feeds q with the changes of table after revision rev until ctx
// ends. The client resumes a watch across reconnects by itself; this loop
// starts a new one where the client gives up: when the member lost its
// leader (the watch requires one, so a partitioned member cannot keep it
// waiting forever) or when the history was compacted.
func (s *Store) watch(ctx context.Context, table string, rev int64, q *watchq.Queue[store.Change]) {
	prefix := s.tablePrefix(table)
	for attempt := 1; ctx.Err() == nil; attempt++ {
		if rev == 0 {
			r, err := s.currentRevision(ctx)
			if err != nil {
				sleep(ctx, watchBackoff(attempt))
				continue
			}
			// What happened before r was not watched: start afresh.
			rev = r
			q.Lose()
		}
		wctx, wcancel := context.WithCancel(ctx)
		wch := s.cli.Watch(clientv3.WithRequireLeader(wctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				rev = 0
				break
			}
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				c := store.Change{Table: table, Key: string(ev.Kv.Key[len(prefix):])}
				if ev.Type == clientv3.EventTypeDelete {
					c.Deleted = true
				} else {
					c.Value = ev.Kv.Value
				}
				q.Push(c)
				rev = ev.Kv.ModRevision
			}
			attempt = 0
		}
		wcancel() // ends the client's watch if it is still open
		sleep(ctx, watchBackoff(attempt))
	}
}

// watchBackoff spaces out new watches when the cluster keeps refusing
// them: 50 ms doubling up to 1 s, so a watch is back within a second of
// the cluster.
func watchBackoff(attempt int) time.Duration {
	return min(50*time.Millisecond<<min(max(attempt-1, 0), 5), time.Second)
}
