package etcd

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// SetUnitData implements relation.Member. The bag is bound to the unit's lease, and the
// write lands only while the unit's name is still held by that lease.
func (m *member) SetUnitData(ctx context.Context, kv map[string]string) error {
	m.mu.Lock()
	for k, v := range kv { // remembered even if the write fails: a rejoin puts it back
		if v == "" {
			delete(m.bag, k)
		} else {
			m.bag[k] = v
		}
	}
	session := m.session
	if session != nil && m.storedLease == session.Lease() {
		kv = maps.Clone(kv)
		for k, v := range kv {
			if held, ok := m.stored[k]; ok && held == v {
				delete(kv, k)
			}
		}
	}
	m.mu.Unlock()
	if session == nil {
		return fmt.Errorf("%s: %w (rejoining after a lost lease)", m.unit, relation.ErrNotJoined)
	}
	if len(kv) == 0 {
		return nil // etcd holds all of it already
	}
	return m.putBag(ctx, session, kv)
}

func (m *member) putBag(ctx context.Context, session *concurrency.Session, kv map[string]string) error {
	ops := make([]clientv3.Op, 0, len(kv))
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		if kv[k] == "" {
			ops = append(ops, clientv3.OpDelete(m.s.layout.field(m.unit, k)))
		} else {
			ops = append(ops, clientv3.OpPut(m.s.layout.field(m.unit, k), kv[k], clientv3.WithLease(session.Lease())))
		}
	}
	start := time.Now()
	resp, err := m.s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(m.s.layout.member(m.unit)), "=", session.Lease())).
		Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("%s: write bag: %w", m.unit, explain(m.s.client, err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: write bag: %w (the unit's lease no longer holds its name)", m.unit, relation.ErrNotJoined)
	}
	m.wrote(kv, m.s.layout.bag(m.unit), resp.Header.Revision, start)
	m.mu.Lock()
	if m.storedLease != session.Lease() {
		m.stored, m.storedLease = map[string]string{}, session.Lease()
	}
	maps.Copy(m.stored, kv)
	m.mu.Unlock()
	return nil
}

// wrote shows a successful write in the member's own copy at once (read your writes):
// without it the next decision, made before the watch echoes the write, would see the
// old value and write again. It wakes the member as the echo would (leaderWakes).
func (m *member) wrote(kv map[string]string, prefix string, rev int64, start time.Time) {
	m.mu.Lock()
	f := m.follower
	m.mu.Unlock()
	keyed := make(map[string]string, len(kv))
	for k, v := range kv {
		keyed[prefix+k] = v
	}
	if f.wrote(keyed, rev, start) {
		m.notify() // as the echo would have
	}
}

// maxOps keeps each transaction under etcd's --max-txn-ops (default 128).
const maxOps = 100

// SetLeaderData implements relation.Member: one transaction per chunk, each fenced by
// the `elected` key this leader created and guarded by the bags it depends on. When a
// guard fails, the transaction's else branch reads the guarded fields, the writes of
// failed guards are dropped and the rest written again.
func (m *member) SetLeaderData(ctx context.Context, kv map[string]string, guards ...relation.Guard) ([]string, error) {
	m.mu.Lock()
	rev, elected, leading := m.electedRev, m.leading, m.leadingLocked()
	m.mu.Unlock()
	if !leading {
		why := ""
		if elected {
			why = " (etcd has not confirmed its lease within the TTL: it may have expired)"
		}
		return nil, fmt.Errorf("%s writes leader data: %w%s", m.unit, relation.ErrNotLeader, why)
	}
	chunks := chunk(kv, guards)
	dropped := make([][]string, len(chunks))
	errs := make([]error, len(chunks))
	var wg sync.WaitGroup
	inFlight := make(chan struct{}, concurrentChunks)
	for i, c := range chunks {
		wg.Add(1)
		inFlight <- struct{}{}
		go func() {
			defer func() { <-inFlight; wg.Done() }()
			dropped[i], errs[i] = m.writeLeaderChunk(ctx, rev, c.kv, c.guards)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return slices.Concat(dropped...), err // the chunks fail alike: one error says it
		}
	}
	return slices.Concat(dropped...), nil
}

// concurrentChunks bounds the transactions of one leader write in flight at once: they
// touch disjoint keys, and etcd commits those that arrive together with one fsync.
const concurrentChunks = 8

func (m *member) writeLeaderChunk(ctx context.Context, electedRev int64, kv map[string]string, guards []relation.Guard) ([]string, error) {
	var dropped []string
	for len(kv) > 0 {
		cmps := []clientv3.Cmp{m.fence(electedRev)}
		elseOps := []clientv3.Op{clientv3.OpGet(m.s.layout.elected())}
		for _, g := range guards {
			key := m.s.layout.field(g.Unit, g.Field)
			cmps = append(cmps, clientv3.Compare(clientv3.Value(key), "=", g.Value))
			elseOps = append(elseOps, clientv3.OpGet(key))
		}
		var ops []clientv3.Op
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			if kv[k] == "" {
				ops = append(ops, clientv3.OpDelete(m.s.layout.leaderKey(k)))
			} else {
				ops = append(ops, clientv3.OpPut(m.s.layout.leaderKey(k), kv[k]))
			}
		}
		start := time.Now()
		resp, err := m.s.client.Txn(ctx).If(cmps...).Then(ops...).Else(elseOps...).Commit()
		if err != nil {
			return dropped, fmt.Errorf("%s: write leader data: %w", m.unit, explain(m.s.client, err))
		}
		if resp.Succeeded {
			m.wrote(kv, m.s.layout.leaderData(), resp.Header.Revision, start)
			return dropped, nil
		}
		lead := resp.Responses[0].GetResponseRange().Kvs
		if len(lead) == 0 || lead[0].CreateRevision != electedRev {
			return dropped, fmt.Errorf("%s writes leader data: %w (it no longer holds the elected key)", m.unit, relation.ErrNotLeader)
		}
		var holding, failing []relation.Guard
		for i, g := range guards {
			kvs := resp.Responses[i+1].GetResponseRange().Kvs
			if len(kvs) > 0 && string(kvs[0].Value) == g.Value {
				holding = append(holding, g)
			} else {
				failing = append(failing, g)
			}
		}
		keep, d := relation.Split(kv, failing, func(relation.Guard) bool { return false })
		dropped = append(dropped, d...)
		kv, guards = keep, holding
	}
	return dropped, nil
}

type leaderChunk struct {
	kv     map[string]string
	guards []relation.Guard
}

// chunk packs writes into transactions of at most maxOps operations and comparisons,
// keeping each guard with its keys.
func chunk(kv map[string]string, guards []relation.Guard) []leaderChunk {
	var out []leaderChunk
	cur := leaderChunk{kv: map[string]string{}}
	flush := func() {
		if len(cur.kv) > 0 {
			out = append(out, cur)
		}
		cur = leaderChunk{kv: map[string]string{}}
	}
	add := func(keys []string, g *relation.Guard) {
		if len(cur.kv)+len(keys) > maxOps || len(cur.guards)+1 > maxOps {
			flush()
		}
		for _, k := range keys {
			cur.kv[k] = kv[k]
		}
		if g != nil {
			cur.guards = append(cur.guards, *g)
		}
	}
	guarded := map[string]bool{}
	for _, g := range guards {
		var keys []string
		for _, k := range g.Keys {
			if _, ok := kv[k]; ok && !guarded[k] {
				keys, guarded[k] = append(keys, k), true
			}
		}
		if len(keys) > 0 {
			add(keys, &g)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		if !guarded[k] {
			add([]string{k}, nil)
		}
	}
	flush()
	return out
}
