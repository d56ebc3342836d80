package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// ErrDuplicate is returned by Join when another live process holds the unit's name.
var ErrDuplicate = errors.New("a unit of that name is already joined")

// member is one unit on the etcd relation. A background loop keeps it joined: when its
// lease is lost (etcd unreachable for longer than the TTL) it takes a new lease, claims
// its name again, puts its bag back and campaigns again. Its jobs, a file each: the
// session and leaving (session.go), the campaign and the fence on leader writes
// (campaign.go), its followers and snapshot (snapshot.go), its writes (writes.go).
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
	// tenure is until when this leader is sure its lease lives (tenure.go); tenureTimer
	// wakes the member's waiters then.
	tenure      time.Time
	tenureTimer *time.Timer
	bag         map[string]string // this unit's bag as it wants it, put back after a lost lease
	// stored is what etcd holds of the bag under storedLease, as far as this member's
	// writes succeeded: a write of a value etcd already holds is skipped (every write
	// is a revision each member reads, and history etcd keeps until compaction).
	stored      map[string]string
	storedLease clientv3.LeaseID
	follower    *follower
	group       *follower // the Store's follower of groupScope, while not leading
	left        bool
	stats       Stats
}

// ReadCounts implements relation.ReadCounter.
func (m *member) ReadCounts() relation.ReadCounts { return m.stats.counts() }

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
			return false, explain(m.s.client, fmt.Errorf("relation: waiting for the first read from etcd: %w", ctx.Err()))
		}
	}
	return true, nil
}
