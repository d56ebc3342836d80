package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// ErrDuplicate is returned by Join when another live process holds the unit's name.
var ErrDuplicate = errors.New("a unit of that name is already joined")

// notifier hands out a channel that is closed at the next change.
type notifier struct {
	mu      sync.Mutex
	changed chan struct{}
}

func (n *notifier) current() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.changed == nil {
		n.changed = make(chan struct{})
	}
	return n.changed
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.changed != nil {
		close(n.changed)
	}
	n.changed = make(chan struct{})
}

// member is one unit on the etcd relation. A background loop keeps it joined: when its
// lease is lost (etcd unreachable for longer than the TTL) it takes a new lease, claims
// its name again, puts its bag back and campaigns again.
type member struct {
	s    *Store
	unit string
	opts relation.JoinOptions
	log  hclog.Logger
	notifier

	ctx    context.Context // the membership; cancelled by Leave
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	session  *concurrency.Session // nil while rejoining
	previous clientv3.LeaseID     // the lease lost before a rejoin: ours to take back
	// electedRev is the create revision of `elected` while this unit leads: it fences
	// every leader write.
	electedRev int64
	leading    bool
	bag        map[string]string // this unit's bag as it wants it, put back after a lost lease
	follower   *follower
	group      *follower // the Store's follower of groupScope, while not leading
	left       bool
	stats      Stats
}

// Stats reports what this member has read from etcd (the store's Stats count it too).
func (m *member) Stats() *Stats { return &m.stats }

// Join implements relation.Store. It fails at once when etcd cannot be reached (bounded by
// ctx) or another live process holds the name; a name held by a dead process's lease is
// taken once that lease expires.
func (s *Store) Join(ctx context.Context, unit string, opts relation.JoinOptions) (relation.Member, error) {
	m := &member{s: s, unit: unit, opts: opts, log: s.log.With("unit", unit), bag: map[string]string{}}
	m.stats.parent = &s.stats
	m.ctx, m.cancel = context.WithCancel(context.Background())
	session, err := m.join(ctx)
	if err != nil {
		m.cancel()
		return nil, err
	}
	m.setFollower(s.layout.narrowScope(unit))
	m.wg.Add(1)
	go m.stayJoined(session)
	if err := m.waitReady(ctx); err != nil {
		m.Leave(context.Background())
		return nil, err
	}
	return m, nil
}

func (m *member) Unit() string { return m.unit }

// waitReady waits for the first read of whichever followers are current: an election
// won at once replaces the narrow follower (and leaves the group's) before it has read
// anything.
func (m *member) waitReady(ctx context.Context) error {
	for {
		m.mu.Lock()
		f, group := m.follower, m.group
		m.mu.Unlock()
		read, err := m.awaitRead(ctx, f, group)
		if read || err != nil {
			return err
		}
	}
}

// awaitRead waits until f, and group unless it is nil, have made their first read. It
// returns false without an error when one of them was stopped unread because the member
// moved on to another (look again at the member's current ones).
func (m *member) awaitRead(ctx context.Context, f, group *follower) (bool, error) {
	for _, x := range []*follower{f, group} {
		if x == nil {
			continue
		}
		select {
		case <-x.ready: // read, whether or not stopped since
			continue
		default:
		}
		select {
		case <-x.ready:
		case <-x.done: // stopped unread
			m.mu.Lock()
			same := m.follower == f && m.group == group
			m.mu.Unlock()
			if same {
				return false, fmt.Errorf("relation: the follower of %s stopped before its first read", m.unit)
			}
			return false, nil
		case <-ctx.Done():
			return false, fmt.Errorf("relation: waiting for the first read from etcd: %w", ctx.Err())
		}
	}
	return true, nil
}

// join takes a lease and claims the unit's name with it, putting the bag back.
func (m *member) join(ctx context.Context) (*concurrency.Session, error) {
	// The session's own context is the client's: Leave must still revoke the lease after
	// the membership's context is cancelled.
	session, err := newSession(ctx, m.s.client, m.s.ttl)
	if err != nil {
		return nil, fmt.Errorf("join %s: lease from etcd: %w", m.unit, err)
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
	for {
		resp, err := m.s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(session.Lease()))).
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
		if since.IsZero() {
			since = time.Now()
			m.log.Info("the unit's name is held by an earlier lease; waiting for it to expire",
				"lease", fmt.Sprintf("%x", holder), "ttl", ttl.TTL)
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
		m.loseSession()
		m.log.Warn("relation: lease lost (etcd unreachable for longer than the TTL?); joining again")
		backoff := 200 * time.Millisecond
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
			m.log.Warn("relation: joining again failed; retrying", "error", err, "in", backoff)
			sleep(m.ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
		}
	}
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

// campaignRefusedRetry is how long a unit whose campaign etcd refused waits to try again.
var campaignRefusedRetry = 10 * time.Second

// campaign makes this unit the leader as soon as `elected` is free. The key is created
// only where none exists (its create revision is 0), bound to the unit's lease, so it
// goes when the leader's lease goes; that create revision then fences every leader write.
// A unit that finds the key held watches it from that revision until it is deleted, then
// tries again. A try is one transaction and one single-key watch: O(1) per candidate.
// (concurrency.Election queues candidates instead, and each one's first wait is a range
// over all the others, sorted: O(N) in etcd per candidate; 1,000 eligible units took
// 1.17 s to join with it, 0.69 s without, BenchmarkJoin. A queue's order buys nothing
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
			m.lead(resp.Header.Revision)
			return
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && clientv3.LeaseID(kvs[0].Lease) == session.Lease() {
			m.lead(kvs[0].CreateRevision) // an earlier try landed though its answer was lost
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

// lead makes this member the leader, fenced by the create revision of `elected`.
func (m *member) lead(electedRev int64) {
	m.log.Info("relation: elected leader")
	m.mu.Lock()
	m.electedRev, m.leading = electedRev, true
	m.mu.Unlock()
	m.setFollower(m.s.layout.wideScope())
}

// leaderWakes: a leader's view notifies at once for every change but of the bag fields
// the schema does not name as waking it (the units' status).
func (l layout) leaderWakes(p place) bool {
	return p.kind != placeField || l.schema.WakesLeader(p.field)
}

// loseSession forgets the lease and any leadership that went with it.
func (m *member) loseSession() {
	m.mu.Lock()
	wasLeading := m.leading
	if m.session != nil {
		m.previous = m.session.Lease()
	}
	m.session, m.electedRev, m.leading = nil, 0, false
	m.mu.Unlock()
	if wasLeading {
		m.log.Warn("relation: leadership lost with the lease")
		m.setFollower(m.s.layout.narrowScope(m.unit))
	}
	m.notify()
}

// setFollower switches what the member follows (narrow, or the whole relation while it
// leads).
func (m *member) setFollower(sc scope) {
	var wakes func(place) bool
	if sc.wide {
		wakes = m.s.layout.leaderWakes
	}
	f := startFollower(m.s.client, m.s.layout, sc, m.notify, wakes, m.log, &m.stats, m.s.onLag)
	var group *follower
	if !sc.wide {
		group = m.s.joinGroup(m)
	}
	m.mu.Lock()
	old := m.follower
	m.follower, m.group = f, group
	m.mu.Unlock()
	if old != nil {
		old.stop()
	}
	if sc.wide {
		m.s.leaveGroup(m) // the whole relation holds what the group's follower did
	}
	m.notify()
}

// fence holds while `elected` is still the key this leader created.
func (m *member) fence(electedRev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(m.s.layout.elected()), "=", electedRev)
}

// Snapshot implements relation.Member.
func (m *member) Snapshot(ctx context.Context) (relation.Snapshot, error) {
	changed := m.current() // first, so a change after the read below closes it
	var f, group *follower
	var leading bool
	for {
		var left bool
		m.mu.Lock()
		f, group, leading, left = m.follower, m.group, m.leading, m.left
		m.mu.Unlock()
		if left {
			return relation.Snapshot{}, fmt.Errorf("%s: %w", m.unit, relation.ErrNotJoined)
		}
		read, err := m.awaitRead(ctx, f, group)
		if err != nil {
			return relation.Snapshot{}, err
		}
		if read {
			break
		}
	}
	snap := f.snapshot()
	var inGroup *relation.Snapshot // what the group's follower holds (a narrow follower's partner)
	if group != nil {
		g := group.snapshot()
		inGroup = &g
		snap.Leader, snap.Revision = g.Leader, max(snap.Revision, g.Revision)
	}
	switch {
	case leading:
		snap.Leader = m.unit
	case snap.Leader == m.unit:
		snap.Leader = "" // our old leadership's key, not yet expired
	}
	if !leading {
		snap = m.s.layout.schema.Narrow(snap, m.unit)
	}
	if inGroup != nil {
		snap.LeaderData = withGroupData(snap.LeaderData, inGroup.LeaderData)
	}
	if snap.Units[m.unit] == nil {
		snap.Units[m.unit] = map[string]string{}
	}
	snap.Changed = changed
	return snap, nil
}

// withGroupData is a member's own leader data with the group's keys from the group's
// follower (which follows only those), in a new map: a snapshot's maps are shared and
// never written.
func withGroupData(own, group map[string]string) map[string]string {
	out := maps.Clone(own)
	maps.Copy(out, group)
	return out
}

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
	m.mu.Unlock()
	if session == nil {
		return fmt.Errorf("%s: %w (rejoining after a lost lease)", m.unit, relation.ErrNotJoined)
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
		return fmt.Errorf("%s: write bag: %w", m.unit, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: write bag: %w (the unit's lease no longer holds its name)", m.unit, relation.ErrNotJoined)
	}
	m.wrote(kv, m.s.layout.bag(m.unit), resp.Header.Revision, start)
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
	rev, leading := m.electedRev, m.leading
	m.mu.Unlock()
	if !leading {
		return nil, fmt.Errorf("%s writes leader data: %w", m.unit, relation.ErrNotLeader)
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
			return dropped, fmt.Errorf("%s: write leader data: %w", m.unit, err)
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

// Leave implements relation.Member: it stops following, resigns, and revokes the lease,
// which deletes the unit's name, bag and candidacy at once.
func (m *member) Leave(ctx context.Context) error {
	m.mu.Lock()
	if m.left {
		m.mu.Unlock()
		return nil
	}
	m.left = true
	m.mu.Unlock()
	m.cancel()
	// A campaign cut short resigns on the client's own context, which waits for etcd:
	// bound the wait by ours.
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
