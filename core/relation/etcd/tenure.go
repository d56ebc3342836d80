package etcd

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// A leader's tenure is how long it can be sure, on its own clock, that its lease is alive
// at etcd: from the moment it sent a keepalive etcd answered, for the TTL etcd gave, less
// a margin. It acts as leader only while sure (Snapshot names another leader, or none;
// SetLeaderData refuses), so a leader cut off from etcd stops signing before its lease
// can have expired, that is before another unit can be elected. etcd's fence on every
// leader write stays the guarantee; this keeps a leader from working for nothing.

// holdTenure keeps the leader's tenure current while ctx lives: a keepalive of the
// session's lease every quarter of the TTL, each bounded by a quarter of the TTL and tried
// again at once when it fails (a new stream each, so a member that stopped answering
// costs one try and the next goes to another).
func (m *member) holdTenure(ctx context.Context, session *concurrency.Session) {
	defer m.wg.Done()
	ttl := time.Duration(m.s.ttl) * time.Second
	for ctx.Err() == nil {
		sent := time.Now()
		kctx, cancel := context.WithTimeout(ctx, ttl/4)
		resp, err := m.s.client.KeepAliveOnce(kctx, session.Lease())
		cancel()
		wait := ttl / 4
		switch {
		case err == nil:
			m.extendTenure(sent.Add(time.Duration(resp.TTL)*time.Second - tenureMargin(ttl)))
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return // the session ends with it
		default:
			wait = 100 * time.Millisecond
		}
		sleep(ctx, wait)
	}
}

// tenureMargin covers etcd's own clock and a keepalive answered late.
func tenureMargin(ttl time.Duration) time.Duration { return max(ttl/10, 200*time.Millisecond) }

// extendTenure records that the lease lives until at least until, and wakes the member's
// waiters when it becomes sure again and when it ceases to be.
func (m *member) extendTenure(until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !until.After(m.tenure) {
		return
	}
	wasSure := time.Now().Before(m.tenure)
	m.tenure = until
	if m.tenureTimer != nil {
		m.tenureTimer.Stop()
	}
	m.tenureTimer = time.AfterFunc(time.Until(until), m.tenureLapsed)
	if !wasSure {
		go m.notify()
	}
}

// tenureLapsed: the tenure's end came with no keepalive answered since.
func (m *member) tenureLapsed() {
	if m.ctx.Err() != nil || m.s.closed.Load() {
		return // the member left, or its store closed: nothing acts on it any more
	}
	m.mu.Lock()
	lapsed := m.leading && !time.Now().Before(m.tenure)
	m.mu.Unlock()
	if lapsed {
		m.log.Warn("relation: etcd has not confirmed the lease within its TTL: acting as leader no more until it does")
	}
	m.notify()
}

// leadingLocked: this member holds `elected` and is sure its lease lives.
func (m *member) leadingLocked() bool { return m.leading && time.Now().Before(m.tenure) }
