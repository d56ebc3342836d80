package etcd

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// campaignRefusedRetry is how long a unit whose campaign etcd refused waits to try again.
var campaignRefusedRetry = 10 * time.Second

// campaign makes this unit the leader as soon as `elected` is free. The key is created
// only where none exists (its create revision is 0), bound to the unit's lease, so it
// goes when the leader's lease goes; that create revision then fences every leader write.
// A unit that finds the key held watches it from that revision until it is deleted, then
// tries again. A try is one transaction and one single-key watch: O(1) per candidate.
// (concurrency.Election queues candidates instead, and each one's first wait is a range
// over all the others, sorted: O(N) in etcd per candidate, which BenchmarkJoin shows
// (docs/BENCHMARKS.md). A queue's order buys nothing
// here: any eligible unit may lead.)
func (m *member) campaign(ctx context.Context, session *concurrency.Session) {
	key := m.s.layout.elected()
	refused := false
	for ctx.Err() == nil {
		resp, err := m.s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, m.unit, clientv3.WithLease(session.Lease()))).
			Else(clientv3.OpGet(key)).Commit()
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			// etcd's RBAC says this unit only asks (tlsrelay etcd bootstrap), or its role
			// is being changed: said once, tried again now and then, so that a grant made
			// later is picked up without a restart.
			if !refused {
				m.log.Error("relation: etcd refuses this unit's campaign: its etcd user is not leader-eligible; "+
					"set relation.leader_eligible: false, or grant it with 'tlsrelay etcd bootstrap --leader-eligible'", "error", err)
				refused = true
			}
			sleep(ctx, campaignRefusedRetry)
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("relation: campaign failed; retrying", "error", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		if resp.Succeeded {
			m.lead(ctx, session, resp.Header.Revision)
			return
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && clientv3.LeaseID(kvs[0].Lease) == session.Lease() {
			m.lead(ctx, session, kvs[0].CreateRevision) // an earlier try landed though its answer was lost
			return
		}
		m.waitDeleted(ctx, key, resp.Header.Revision)
	}
}

// waitDeleted returns once key is deleted after revision rev, or the watch ends.
func (m *member) waitDeleted(ctx context.Context, key string, rev int64) {
	wctx, cancel := context.WithCancel(watchContext(ctx))
	defer cancel()
	for resp := range m.s.client.Watch(wctx, key, clientv3.WithRev(rev+1), clientv3.WithFilterPut()) {
		if resp.Err() != nil {
			sleep(ctx, 200*time.Millisecond) // etcd lost its leader, or compacted: look again
			return
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return
			}
		}
	}
}

// lead makes this member the leader, fenced by the create revision of `elected`, for as
// long as the session lives; it acts as leader while it holds its tenure (tenure.go).
func (m *member) lead(ctx context.Context, session *concurrency.Session, electedRev int64) {
	m.log.Info("relation: elected leader")
	m.mu.Lock()
	m.electedRev, m.leading = electedRev, true
	m.mu.Unlock()
	m.wg.Add(1)
	go m.holdTenure(ctx, session)
	m.setFollower(m.s.layout.wideScope())
}

// leaderWakes: a leader's view notifies at once for every change but of the bag fields
// the schema does not name as waking it (the units' status).
func (l layout) leaderWakes(p place) bool {
	return p.kind != placeField || l.schema.WakesLeader(p.field)
}

// fence holds while `elected` is still the key this leader created.
func (m *member) fence(electedRev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(m.s.layout.elected()), "=", electedRev)
}
