// Package swarm simulates many units of a group in one process, for the scale benchmark
// (cmd/tlsrelay-scale): each simulated unit joins a real etcd with a lease of its own,
// makes its key and CSR in memory, publishes them and its status in its bag, and installs
// what the leader signs, deciding every step with the protocol's own unit side
// (protocol.Decide). What it saves against an agent is the cost a host pays alone: no
// plugin process, no files, and no watches of its own — the swarm follows leader data
// with one watch and wakes the units a change concerns, as a process of many units
// follows the group's keys with one follower. The leader it talks to is a real agent.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
)

// Options configure a Swarm.
type Options struct {
	Endpoints []string
	// Config is the deployment: the relation's name and what a unit's certificate asks
	// for (certificate.*), as an agent of it would read it.
	Config *config.Config
	// LeaseTTL is each unit's lease (relation.etcd.lease_ttl by default).
	LeaseTTL time.Duration
	// Clients is how many etcd connections the units share (default 8), as units on
	// many hosts spread over etcd's members and streams.
	Clients int
	// Workers is how many units decide and act at once (default 64).
	Workers int
	Log     hclog.Logger
}

// Swarm is a set of simulated units and the one watch they share.
type Swarm struct {
	opts    Options
	keys    etcd.Keys
	schema  groupKeys
	clients []*clientv3.Client
	ctx     context.Context
	cancel  context.CancelFunc
	work    chan *Unit
	wg      sync.WaitGroup
	// parsed is shared by every unit: the group's CA bundle and CRL are parsed once a
	// value, as each host parses them once, not once per simulated unit (a CRL of
	// thousands of entries parsed by 10,000 units in one process is gigabytes and
	// minutes of CPU no host pays). A unit's own values share it too and are parsed
	// afresh when another's were there before: Parsed names the value it expects.
	parsed *protocol.Parsed

	mu     sync.RWMutex
	data   map[string]string // leader data, as the watch has seen it
	leader string
	units  map[string]*Unit // by name
	byKey  map[string]*Unit // each unit's own leader-data keys

	// What the units would have read through watches of their own: the group's keys
	// once for each unit, and each unit's own keys.
	bytesForUnits atomic.Int64
	watchBytes    atomic.Int64 // what the shared watch read
	next          atomic.Int64
	lost          atomic.Int64 // leases the client gave up on, each followed by a join
}

type groupKeys map[string]bool

// New connects to etcd and starts following the relation's leader data.
func New(ctx context.Context, opts Options) (*Swarm, error) {
	if opts.Clients <= 0 {
		opts.Clients = 8
	}
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = opts.Config.Relation.Etcd.LeaseTTL
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	schema := protocol.Schema()
	s := &Swarm{opts: opts, keys: etcd.KeysOf(opts.Config.Relation.Name, schema), schema: groupKeys{},
		data: map[string]string{}, units: map[string]*Unit{}, byKey: map[string]*Unit{}, parsed: protocol.NewParsed()}
	for _, k := range schema.GroupKeys {
		s.schema[k] = true
	}
	for range opts.Clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: opts.Endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("swarm: etcd %v: %w", opts.Endpoints, err)
		}
		s.clients = append(s.clients, c)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.work = make(chan *Unit, 1<<16)
	rev, err := s.load(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.follow(rev)
	for range opts.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	return s, nil
}

// Close stops every unit's keepalives and the watch; the units' leases expire.
func (s *Swarm) Close() {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
	for _, c := range s.clients {
		c.Close()
	}
}

// load reads leader data and who leads, returning the revision to watch from.
func (s *Swarm) load(ctx context.Context) (int64, error) {
	resp, err := s.clients[0].Txn(ctx).Then(
		clientv3.OpGet(s.keys.LeaderData(), clientv3.WithPrefix()),
		clientv3.OpGet(s.keys.Elected())).Commit()
	if err != nil {
		return 0, fmt.Errorf("swarm: read leader data: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		s.data[s.keys.LeaderKeyOf(string(kv.Key))] = string(kv.Value)
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		s.leader = string(kvs[0].Value)
	}
	return resp.Header.Revision, nil
}

// follow applies leader data's changes and wakes the units they concern.
func (s *Swarm) follow(rev int64) {
	defer s.wg.Done()
	ctx := clientv3.WithRequireLeader(s.ctx)
	leaderData := s.clients[0].Watch(ctx, s.keys.LeaderData(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	elected := s.clients[0].Watch(ctx, s.keys.Elected(), clientv3.WithRev(rev+1))
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-s.ctx.Done():
			return
		case resp, ok = <-elected:
		case resp, ok = <-leaderData:
		}
		if !ok || resp.Err() != nil {
			if s.ctx.Err() == nil {
				s.opts.Log.Error("swarm: watch ended; the simulated units stop following", "error", resp.Err())
			}
			return
		}
		s.apply(resp)
	}
}

func (s *Swarm) apply(resp clientv3.WatchResponse) {
	var wake []*Unit
	all := false
	s.mu.Lock()
	for _, ev := range resp.Events {
		key, value := string(ev.Kv.Key), string(ev.Kv.Value)
		size := int64(len(ev.Kv.Key) + len(ev.Kv.Value))
		s.watchBytes.Add(size)
		if key == s.keys.Elected() {
			if ev.Type == clientv3.EventTypeDelete {
				value = ""
			}
			s.leader = value
			s.bytesForUnits.Add(size * int64(len(s.units)))
			continue
		}
		name := s.keys.LeaderKeyOf(key)
		if ev.Type == clientv3.EventTypeDelete {
			delete(s.data, name)
		} else {
			s.data[name] = value
		}
		if s.schema[name] {
			all = true
			s.bytesForUnits.Add(size * int64(len(s.units)))
		} else if u := s.byKey[name]; u != nil {
			wake = append(wake, u)
			s.bytesForUnits.Add(size)
		}
	}
	if all {
		wake = wake[:0]
		for _, u := range s.units {
			wake = append(wake, u)
		}
	}
	s.mu.Unlock()
	for _, u := range wake {
		s.poke(u)
	}
}

// poke queues u to decide again, once however many times it is poked meanwhile.
func (s *Swarm) poke(u *Unit) {
	if u.queued.CompareAndSwap(false, true) {
		select {
		case s.work <- u:
		case <-s.ctx.Done():
		}
	}
}

func (s *Swarm) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case u := <-s.work:
			u.queued.Store(false)
			u.run(s.ctx)
		}
	}
}

// view is what a unit that does not lead reads of leader data: the group's keys and its
// own, as its member's narrow scope would hold them.
func (s *Swarm) view(u *Unit) map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(s.schema)+len(u.ownKeys))
	for k := range s.schema {
		if v, ok := s.data[k]; ok {
			out[k] = v
		}
	}
	for _, k := range u.ownKeys {
		if v, ok := s.data[k]; ok {
			out[k] = v
		}
	}
	return out
}

// LeaderData returns one leader-data value as the swarm's watch has it.
func (s *Swarm) LeaderData(key string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.data[key]
}

// LeaderDataSize is how many leader-data keys match and their values' bytes.
func (s *Swarm) LeaderDataSize(match func(key string) bool) (keys, bytes int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, v := range s.data {
		if match(k) {
			keys, bytes = keys+1, bytes+len(v)
		}
	}
	return keys, bytes
}

// Leader is who leads, as the swarm's watch has it.
func (s *Swarm) Leader() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leader
}

// Join adds n units named <app>/<next number>, joining up to parallel at once; it
// returns once every one has joined (its key and lease in etcd). The units then make
// their CSRs and ask as agents do.
func (s *Swarm) Join(ctx context.Context, app string, n, parallel int, progress func(joined int)) ([]*Unit, error) {
	units := make([]*Unit, n)
	for i := range units {
		name := fmt.Sprintf("%s/%d", app, s.next.Add(1)-1)
		u, err := s.newUnit(name)
		if err != nil {
			return nil, err
		}
		units[i] = u
	}
	var failed atomic.Pointer[error]
	var done atomic.Int64
	sem := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for i, u := range units {
		if failed.Load() != nil || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := u.join(ctx, s.clients[i%len(s.clients)]); err != nil {
				failed.CompareAndSwap(nil, &err)
				return
			}
			if d := done.Add(1); progress != nil && d%1000 == 0 {
				progress(int(d))
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return nil, *err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return units, nil
}

// Units returns every unit that has not left.
func (s *Swarm) Units() []*Unit {
	out := s.joined()
	slices.SortFunc(out, func(a, b *Unit) int { return strings.Compare(a.name, b.name) })
	return out
}

// joined copies the units that have not left, in no order.
func (s *Swarm) joined() []*Unit {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Unit, 0, len(s.units))
	for _, u := range s.units {
		out = append(out, u)
	}
	return out
}

// Count is how many joined units ok holds for, and how many are joined.
func (s *Swarm) Count(ok func(*Unit) bool) (n, of int) {
	// On a copy, not under s.mu: ok takes a unit's lock, which a unit holds while it
	// reads the swarm's view.
	units := s.joined()
	for _, u := range units {
		if ok(u) {
			n++
		}
	}
	return n, len(units)
}

// BytesPerUnit is what each unit would have read by its own watches, on average.
func (s *Swarm) BytesPerUnit() int64 {
	s.mu.RLock()
	n := int64(len(s.units))
	s.mu.RUnlock()
	if n == 0 {
		return 0
	}
	return s.bytesForUnits.Load() / n
}

// LostLeases is how many times a unit's lease went unrenewed for a TTL, so that it
// joined again: a swarm too busy to renew in time (one process doing the work of many
// hosts) shows here.
func (s *Swarm) LostLeases() int64 { return s.lost.Load() }

// WatchBytes is what the swarm's one watch read.
func (s *Swarm) WatchBytes() int64 { return s.watchBytes.Load() }

// Errors returns the units' last errors, at most limit of them.
func (s *Swarm) Errors(limit int) []string {
	var out []string
	for _, u := range s.Units() {
		if e := u.lastError(); e != "" {
			out = append(out, u.name+": "+e)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

var errLeft = errors.New("left")
