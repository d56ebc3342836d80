package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/tlsrelay/tlsrelay/core/backoff"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// join takes a lease and claims the unit's name with it, putting the bag back.
func (m *member) join(ctx context.Context) (*concurrency.Session, error) {
	// The session's own context is the client's: Leave must still revoke the lease after
	// the membership's context is cancelled.
	session, err := newSession(ctx, m.s.client, m.s.ttl)
	if err != nil {
		return nil, fmt.Errorf("join %s: lease from etcd: %w", m.unit, explain(m.s.client, err))
	}
	if err := m.claim(ctx, session); err != nil {
		session.Close()
		return nil, err
	}
	m.mu.Lock()
	bag := maps.Clone(m.bag)
	m.mu.Unlock()
	if len(bag) > 0 {
		if err := m.putBag(ctx, session, bag); err != nil {
			session.Close()
			return nil, err
		}
	}
	m.mu.Lock()
	m.session = session
	m.mu.Unlock()
	m.notify()
	return session, nil
}

// newSession grants a lease, bounded by ctx (NewSession itself waits for etcd unbounded).
func newSession(ctx context.Context, client *clientv3.Client, ttl int) (*concurrency.Session, error) {
	resp, err := client.Grant(ctx, int64(ttl))
	if err != nil {
		return nil, err
	}
	return concurrency.NewSession(client, concurrency.WithLease(resp.ID), concurrency.WithTTL(ttl))
}

type memberValue struct {
	LeaderEligible bool      `json:"leader_eligible"`
	Joined         time.Time `json:"joined"`
}

// claim puts members/<unit> bound to the session's lease, unless it exists. A key held
// by another lease is waited out for that lease's TTL (a crashed process's lease expires);
// one still held after that belongs to a live process and is ErrDuplicate.
func (m *member) claim(ctx context.Context, session *concurrency.Session) error {
	key := m.s.layout.member(m.unit)
	val, _ := json.Marshal(memberValue{LeaderEligible: m.opts.LeaderEligible, Joined: time.Now().UTC()})
	var since time.Time
	var latest time.Time // the latest expiry of the holder's lease seen
	renewals := 0
	for {
		resp, err := m.s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(session.Lease())),
				clientv3.OpDelete(m.s.layout.away(m.unit))). // back: a note it left is void

			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return fmt.Errorf("join %s: %w", m.unit, err)
		}
		if resp.Succeeded {
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // gone in between
		}
		holder := clientv3.LeaseID(kvs[0].Lease)
		if holder == session.Lease() {
			return nil
		}
		m.mu.Lock()
		ours := holder == m.previous
		m.mu.Unlock()
		if ours {
			// Our own lapsed lease, which etcd extended when it restarted: drop it.
			m.s.client.Revoke(ctx, holder)
			continue
		}
		ttl, err := m.s.client.TimeToLive(ctx, holder)
		if err != nil {
			return fmt.Errorf("join %s: %w", m.unit, err)
		}
		if ttl.TTL <= 0 { // expiring or expired: its keys go with it, then the claim succeeds
			sleep(ctx, 250*time.Millisecond)
			if ctx.Err() != nil {
				return fmt.Errorf("join %s: %w", m.unit, ctx.Err())
			}
			continue
		}
		if since.IsZero() {
			since = time.Now()
			m.log.Warn("the unit's name is held by another lease: waiting for it to expire (an agent of this unit stopped a moment ago), "+
				"or to see it renewed (another agent runs this unit)", "lease", fmt.Sprintf("%x", holder), "ttl_s", ttl.TTL)
		}
		// A holder renewing its lease is alive: the lease's expiry moves later. TTLs come
		// in whole seconds, so a move counts past a second. One can be etcd's own (it
		// extends every lease when its leader changes); two are the holder's keepalives.
		if expiry := time.Now().Add(time.Duration(ttl.TTL) * time.Second); latest.IsZero() {
			latest = expiry
		} else if expiry.Sub(latest) > time.Second {
			renewals, latest = renewals+1, expiry
		}
		if renewals >= 2 {
			return fmt.Errorf("join %s: %w (lease %x was renewed %d times in %s: another agent runs this unit; two agents may not share a unit name)",
				m.unit, ErrDuplicate, holder, renewals, time.Since(since).Round(time.Second))
		}
		// etcd extends leases when it restarts, so a dead holder's may outlive one TTL.
		if time.Since(since) > time.Duration(2*ttl.GrantedTTL+1)*time.Second {
			return fmt.Errorf("join %s: %w (lease %x has been renewed for twice its %ds TTL: two agents may not share a unit name)",
				m.unit, ErrDuplicate, holder, ttl.GrantedTTL)
		}
		sleep(ctx, 250*time.Millisecond)
		if ctx.Err() != nil {
			return fmt.Errorf("join %s: %w (waiting for the lease of an earlier holder of the name to expire)", m.unit, ctx.Err())
		}
	}
}

// stayJoined campaigns (when eligible) and, when the lease is lost, joins again.
func (m *member) stayJoined(session *concurrency.Session) {
	defer m.wg.Done()
	for {
		m.serve(session)
		if m.ctx.Err() != nil {
			return // Leave revokes the lease
		}
		if resumed := m.resume(session); resumed != nil {
			session = resumed
			continue
		}
		m.loseSession()
		m.log.Warn("relation: lease lost (etcd unreachable for longer than the TTL?); joining again")
		retry := backoff.New(200*time.Millisecond, 5*time.Second)
		for {
			var err error
			ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
			session, err = m.join(ctx)
			cancel()
			if err == nil {
				m.log.Info("relation: joined again")
				break
			}
			if m.ctx.Err() != nil {
				return
			}
			wait := retry.Next()
			m.log.Warn("relation: joining again failed; retrying", "error", err, "in", wait)
			sleep(m.ctx, wait)
		}
	}
}

// resume takes up the lease of a session that ended because its renewals went
// unanswered for a TTL (the client gives up on them then), if etcd still holds it: the
// answers were late (a member cut off, an etcd election), the lease is not lost, and
// leaving and joining again would be a departure for nothing.
func (m *member) resume(ended *concurrency.Session) *concurrency.Session {
	ttl := time.Duration(m.s.ttl) * time.Second
	ctx, cancel := context.WithTimeout(m.ctx, ttl/2)
	defer cancel()
	resp, err := m.s.client.TimeToLive(ctx, ended.Lease())
	if err != nil || resp.TTL <= 0 {
		return nil
	}
	session, err := concurrency.NewSession(m.s.client, concurrency.WithLease(ended.Lease()), concurrency.WithTTL(m.s.ttl))
	if err != nil {
		return nil
	}
	m.log.Info("relation: lease renewals went unanswered for a while, but etcd still holds the lease: carrying on", "ttl_left_s", resp.TTL)
	m.mu.Lock()
	m.session = session
	m.mu.Unlock()
	return session
}

// serve holds one session: it campaigns and leads until the session ends or the member
// leaves.
func (m *member) serve(session *concurrency.Session) {
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	go func() {
		select {
		case <-session.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if m.opts.LeaderEligible {
		m.campaign(ctx, session)
	}
	<-ctx.Done()
}

// loseSession forgets the lease and any leadership that went with it.
func (m *member) loseSession() {
	m.mu.Lock()
	wasLeading := m.leading
	if m.session != nil {
		m.previous = m.session.Lease()
	}
	m.session, m.electedRev, m.leading, m.tenure = nil, 0, false, time.Time{}
	if m.tenureTimer != nil {
		m.tenureTimer.Stop()
	}
	m.mu.Unlock()
	if wasLeading {
		m.log.Warn("relation: leadership lost with the lease")
		m.setFollower(m.s.layout.narrowScope(m.unit))
	}
	m.notify()
}

// LeaveWithNote implements relation.Member: the note is written first, bound to no
// lease, then the unit leaves; it leaves even if the note could not be written.
func (m *member) LeaveWithNote(ctx context.Context, note string) error {
	var noted error
	if note != "" {
		if _, err := m.s.client.Put(ctx, m.s.layout.away(m.unit), note); err != nil {
			noted = fmt.Errorf("%s: leave a note: %w", m.unit, err)
		}
	}
	return errors.Join(noted, m.Leave(ctx))
}

// Leave implements relation.Member: it stops campaigning and following, and revokes the
// lease, which deletes the unit's name, its bag and `elected` (if it led) at once.
func (m *member) Leave(ctx context.Context) error {
	m.mu.Lock()
	if m.left {
		m.mu.Unlock()
		return nil
	}
	m.left = true
	if m.tenureTimer != nil {
		m.tenureTimer.Stop()
	}
	m.mu.Unlock()
	m.cancel()
	// The campaign and the rejoin loop end with the membership's context; a join under
	// way may still wait on etcd: bound the wait by ours.
	stopped := make(chan struct{})
	go func() { m.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		return fmt.Errorf("%s: leave: %w", m.unit, ctx.Err())
	}
	m.mu.Lock()
	f, session := m.follower, m.session
	m.mu.Unlock()
	if f != nil {
		f.stop()
	}
	m.s.leaveGroup(m)
	m.notify()
	if session == nil {
		return nil
	}
	if _, err := m.s.client.Revoke(ctx, session.Lease()); err != nil {
		return fmt.Errorf("%s: leave: revoke lease: %w", m.unit, err)
	}
	session.Orphan()
	return nil
}
