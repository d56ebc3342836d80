package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsrelay/tlsrelay/core/backoff"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// follower keeps a local copy of one scope of the relation: it reads the scope once at
// one revision, then applies the watch's events. When a watch ends (the connection
// dropped for longer than the client's own resume, or the revision was compacted) it
// reads the scope again and watches from there, so nothing is missed; events at or below
// a key's known revision are ignored, so nothing is applied twice.
type follower struct {
	client *clientv3.Client
	layout layout
	scope  scope
	notify func()
	// wakes says whether a change of a key notifies at once; the others notify within
	// relation.LazyWake. Nil: every change notifies at once.
	wakes func(place) bool
	lazy  *time.Timer // armed while a lazy notification is due (under mu)
	log   hclog.Logger
	stats *Stats
	onLag func(time.Duration) // nil: lag is not measured

	mu   sync.Mutex
	revs map[string]int64 // each key's revision, for telling new events from seen ones
	rev  int64            // the revision of the last full read
	view *view            // the copy, in a snapshot's shape
	// The watch lag is the time from a write's start to its echo through the watch.
	// The echo may come before or after the write's response: written holds writes
	// whose echo has not come, echoed the arrival of recent events.
	written, echoed map[int64]time.Time
	ready           chan struct{} // closed after the first read
	once            sync.Once

	cancel context.CancelFunc
	done   chan struct{}
}

// lazyWake is relation.LazyWake; tests lengthen it.
var lazyWake = relation.LazyWake

func startFollower(client *clientv3.Client, l layout, sc scope, notify func(), wakes func(place) bool, log hclog.Logger, stats *Stats, onLag func(time.Duration)) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{client: client, layout: l, scope: sc, notify: notify, wakes: wakes, log: log, stats: stats, onLag: onLag,
		revs: map[string]int64{}, written: map[int64]time.Time{}, echoed: map[int64]time.Time{}, ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go f.run(ctx)
	return f
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
	f.mu.Lock()
	if f.lazy != nil {
		f.lazy.Stop()
	}
	f.mu.Unlock()
}

// waitReady waits for the first read of the scope.
func (f *follower) waitReady(ctx context.Context) error {
	select {
	case <-f.ready:
		return nil
	case <-ctx.Done():
		// What the members say (quorum lost?), not only that the time ran out.
		return explain(f.client, fmt.Errorf("relation: waiting for the first read from etcd: %w", ctx.Err()))
	}
}

func (f *follower) run(ctx context.Context) {
	defer close(f.done)
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		rev, err := f.load(ctx)
		if err != nil {
			if ctx.Err() == nil {
				wait := retry.Next()
				f.log.Warn("relation: reading from etcd failed; retrying", "error", err, "in", wait)
				sleep(ctx, wait)
			}
			continue
		}
		retry.Reset()
		f.once.Do(func() { close(f.ready) })
		if err := f.watch(ctx, rev); err != nil && ctx.Err() == nil {
			f.log.Info("relation: watch ended; reading again", "reason", err)
		}
	}
}

// loadPage is how many keys one read of a prefix returns at most: a leader's first read
// of a large group is many reads of a bounded size, not one response of every unit's
// bag (some 2 KB a unit; etcd and its client hold a whole response in memory). Not
// smaller: etcd counts the rest of the range on every page (its response's Count), so
// a read of K keys costs some K²/(2·loadPage) steps in etcd; at 2,000 keys a page a new
// leader of 100,000 units spent half a minute reading (docs/BENCHMARKS.md).
var loadPage int64 = 20000

// onPage, when set (tests), runs between the pages of a load.
var onPage func()

// load reads the whole scope at one revision, so that every key is as of the same
// moment, and replaces the local copy with it: the keys and the first page of each
// prefix in one transaction (whose revision the rest is read at), then the further
// pages of each prefix at that revision. A revision compacted meanwhile fails the load,
// which is tried again.
func (f *follower) load(ctx context.Context) (int64, error) {
	var ops []clientv3.Op
	for _, k := range f.scope.keys {
		ops = append(ops, clientv3.OpGet(k))
	}
	for _, p := range f.scope.prefixes {
		ops = append(ops, clientv3.OpGet(p, clientv3.WithPrefix(), clientv3.WithLimit(loadPage), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)))
	}
	// Bounded per attempt: a request stuck on a broken connection is retried, not waited on.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := f.client.Txn(rctx).Then(ops...).Commit()
	cancel()
	if errors.Is(err, rpctypes.ErrPermissionDenied) && f.dropDenied(ctx) {
		return f.load(ctx)
	}
	if err != nil {
		return 0, explain(f.client, err)
	}
	rev := resp.Header.Revision
	revs := map[string]int64{}
	v := newView(rev)
	v.budget = f.layout.schema.WriteBudget
	var bytes int64
	take := func(kvs []*mvccpb.KeyValue) {
		for _, kv := range kvs {
			revs[string(kv.Key)] = kv.ModRevision
			v.set(f.layout.placeOfKV(kv), string(kv.Value), false, kv.ModRevision)
			bytes += int64(len(kv.Key) + len(kv.Value))
		}
	}
	for i, r := range resp.Responses {
		rr := r.GetResponseRange()
		take(rr.Kvs)
		if i < len(f.scope.keys) || !rr.More {
			continue
		}
		prefix := f.scope.prefixes[i-len(f.scope.keys)]
		from := rr.Kvs[len(rr.Kvs)-1].Key
		for more := true; more; {
			if onPage != nil {
				onPage()
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			page, err := f.client.Get(rctx, string(from)+"\x00", clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)),
				clientv3.WithRev(rev), clientv3.WithLimit(loadPage), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
			cancel()
			if err != nil {
				return 0, explain(f.client, fmt.Errorf("read %s at revision %d: %w", prefix, rev, err))
			}
			take(page.Kvs)
			if more = page.More && len(page.Kvs) > 0; more {
				from = page.Kvs[len(page.Kvs)-1].Key
			}
		}
	}
	f.stats.add(bytes, 1, 0) // one full read of the scope, however many pages
	f.mu.Lock()
	if f.view != nil { // a read again (a watch ended): what the last one saw leave, it keeps
		for unit, at := range f.view.left {
			if !v.members[unit] {
				v.sawLeave(unit, at)
			}
		}
	}
	f.revs, f.rev, f.view = revs, rev, v
	f.mu.Unlock()
	f.notify()
	return rev, nil
}

// watchStreams is how many gRPC streams the watches of one process are spread over.
// The etcd client puts every watch with the same request metadata on one stream and
// creates them there one at a time, each waiting for etcd's answer to the last: with
// one stream, a process of 600 units opened its ~5,000 watches in sequence, and its
// units' joins waited on that queue.
const watchStreams = 8

var nextStream atomic.Uint32

// watchContext is ctx for a group of watches (a follower's, a candidate's): they require
// etcd to have a leader, and share one of watchStreams streams, taken in turn.
func watchContext(ctx context.Context) context.Context {
	n := nextStream.Add(1) % watchStreams
	return metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "tlsrelay-watch-stream", strconv.Itoa(int(n)))
}

// errWatchEnded says a watch channel closed: compaction, a cancelled watch, or a lost leader.
var errWatchEnded = errors.New("watch ended")

// watch follows every key and prefix of the scope from rev+1 until one watch ends.
func (f *follower) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(watchContext(ctx))
	defer cancel()
	ended := make(chan error, len(f.scope.keys)+len(f.scope.prefixes))
	var wg sync.WaitGroup
	follow := func(key string, opts ...clientv3.OpOption) {
		defer wg.Done()
		opts = append(opts, clientv3.WithRev(rev+1))
		for resp := range f.client.Watch(wctx, key, opts...) {
			if err := resp.Err(); err != nil {
				ended <- err
				return
			}
			f.apply(resp.Events)
		}
		ended <- errWatchEnded
	}
	for _, k := range f.scope.keys {
		wg.Add(1)
		go follow(k)
	}
	for _, p := range f.scope.prefixes {
		wg.Add(1)
		go follow(p, clientv3.WithPrefix())
	}
	var err error
	select {
	case err = <-ended:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	return err
}

// wrote records puts this process made at rev, unless the copy holds something newer;
// their watch events are then skipped as seen. Deletes ("") are left to the watch: a
// key deleted here could be resurrected by the late event of an earlier put, and a
// delete repeated before its echo is harmless.
// A write wakes the view's owner by the same rule as the watch (wakes): a leader's own
// status write does not make it decide once more.
func (f *follower) wrote(kv map[string]string, rev int64, start time.Time) (wake bool) {
	f.noteWrite(rev, start)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.view == nil {
		return false // not read yet: the first read or the watch brings the write
	}
	changed := false
	for k, v := range kv {
		if cur, ok := f.revs[k]; v == "" || ok && cur >= rev {
			continue
		}
		f.revs[k] = rev
		where := f.layout.placeOf(k)
		f.view.set(where, v, false, rev)
		changed = true
		wake = wake || f.wakes == nil || f.wakes(where)
	}
	if changed && !wake {
		f.notifyLaterLocked()
	}
	return wake
}

// notifyLaterLocked notifies within lazyWake, unless a notification is due already.
// f.mu is held.
func (f *follower) notifyLaterLocked() {
	if f.lazy != nil {
		return
	}
	f.lazy = time.AfterFunc(lazyWake, func() {
		f.mu.Lock()
		f.lazy = nil
		f.mu.Unlock()
		f.notify()
	})
}

// noteWrite pairs this process's write at rev, started at start, with its echo through
// the watch, in whichever order the two come; the pair is one watch-lag sample.
func (f *follower) noteWrite(rev int64, start time.Time) {
	if f.onLag == nil {
		return
	}
	f.mu.Lock()
	at, echoed := f.echoed[rev]
	if !echoed {
		remember(f.written, rev, start)
	}
	f.mu.Unlock()
	if echoed {
		f.onLag(at.Sub(start))
	}
}

// maxEchoes bounds written and echoed (a watch that restarted from a fresh read never
// echoes the writes before it; most events are other units' writes).
const maxEchoes = 64

func remember(m map[int64]time.Time, rev int64, at time.Time) {
	if len(m) >= maxEchoes {
		clear(m)
	}
	m[rev] = at
}

func (f *follower) apply(events []*clientv3.Event) {
	var bytes int64
	changed, urgent := false, false
	var lags []time.Duration
	f.mu.Lock()
	for _, ev := range events {
		key := string(ev.Kv.Key)
		bytes += int64(len(ev.Kv.Key) + len(ev.Kv.Value))
		if f.onLag != nil {
			if start, ok := f.written[ev.Kv.ModRevision]; ok {
				lags = append(lags, time.Since(start))
				delete(f.written, ev.Kv.ModRevision)
			} else {
				remember(f.echoed, ev.Kv.ModRevision, time.Now())
			}
		}
		if cur, ok := f.revs[key]; ok && ev.Kv.ModRevision <= cur {
			continue // seen already
		}
		if ev.Kv.ModRevision <= f.rev && ev.Type == clientv3.EventTypePut {
			continue // older than the read this copy started from
		}
		where := f.layout.placeOf(key) // a delete carries no lease
		switch ev.Type {
		case clientv3.EventTypePut:
			where = f.layout.placeOfKV(ev.Kv)
			f.revs[key] = ev.Kv.ModRevision
			f.view.set(where, string(ev.Kv.Value), false, ev.Kv.ModRevision)
		case clientv3.EventTypeDelete:
			delete(f.revs, key)
			f.view.set(where, "", true, ev.Kv.ModRevision)
		}
		changed = true
		urgent = urgent || f.wakes == nil || f.wakes(where)
	}
	if changed && !urgent {
		f.notifyLaterLocked()
	}
	f.mu.Unlock()
	for _, lag := range lags {
		f.onLag(lag)
	}
	f.stats.add(bytes, 0, int64(len(events)))
	if urgent {
		f.notify()
	}
}

// snapshot is the local copy in the relation's shape (see view).
func (f *follower) snapshot() relation.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view.snapshot()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
