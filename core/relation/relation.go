// Package relation is peer messaging for a group of units: each unit's data bag, which
// only that unit writes; leader data, which only the leader writes; who is leader; and a
// way to wait for the next change. The memory Store serves one process (unit tests,
// `up --store memory`); core/relation/etcd serves units on many hosts through the same
// interface.
package relation

import (
	"context"
	"errors"
	"maps"
	"time"
)

// ErrNotLeader is returned when a unit that is not the leader writes leader data.
var ErrNotLeader = errors.New("not the leader")

// ErrJoined is returned by Store.SetAway for a unit that is joined: only a unit that
// left may have a note.
var ErrJoined = errors.New("joined")

// ErrNotJoined is returned by a member after it has left, or while it rejoins.
var ErrNotJoined = errors.New("not joined")

// Store is a relation: units join it and become Members.
type Store interface {
	// Join adds a unit to the group. Joining a name that is already joined is an error.
	Join(ctx context.Context, unit string, opts JoinOptions) (Member, error)
	// Observe follows the whole relation without joining it (status, `up`'s progress).
	Observe(ctx context.Context) (Observer, error)
	// Request sets an operator's request to the group's leader (`tlsrelay ca rotate`);
	// the leader sees it in Snapshot.Requests and records what it acted on in leader data.
	Request(ctx context.Context, name, value string) error
	// SetAway leaves note for a unit that is not joined, as its Member.LeaveWithNote
	// would: the word of an operator, or of the unit's own credentials after its agent
	// stopped (`tlsrelay revoke`, `tlsrelay agent --leave`). It fails while the unit is
	// joined.
	SetAway(ctx context.Context, unit, note string) error
	// Close releases the store; members' calls fail afterwards.
	Close() error
}

// JoinOptions are a unit's terms of membership.
type JoinOptions struct {
	// LeaderEligible units campaign for the leadership; others only ask for certificates
	// (Octavia's shape: controllers sign, amphorae ask).
	LeaderEligible bool
}

// Member is one unit's handle on the relation.
type Member interface {
	Unit() string
	// Snapshot is a consistent view of the relation as this unit needs it. The leader
	// sees every joined unit's bag and all leader data; any other unit sees only its own
	// bag and the leader data its protocol reads (see Narrow).
	Snapshot(ctx context.Context) (Snapshot, error)
	// SetUnitData merges kv into this unit's bag; an empty value deletes the key.
	SetUnitData(ctx context.Context, kv map[string]string) error
	// SetLeaderData merges kv into leader data; an empty value deletes the key. It fails
	// with ErrNotLeader unless this unit is the leader when the write lands. Writes whose
	// guard no longer holds are dropped (and reported in the result), the rest land.
	SetLeaderData(ctx context.Context, kv map[string]string, guards ...Guard) (dropped []string, err error)
	// Leave departs the group: the bag is removed and leadership passes on.
	Leave(ctx context.Context) error
	// LeaveWithNote departs as Leave does, leaving note behind: unlike the bag it
	// outlives the membership, and the leader and observers see it in Snapshot.Away
	// until the unit joins again (which clears it).
	LeaveWithNote(ctx context.Context, note string) error
}

// Guard makes a leader-data write conditional on a unit's bag: Keys land only while
// Unit's Field still holds Value. The leader publishes a certificate only if the unit
// still asks for the CSR it was signed for.
type Guard struct {
	Unit, Field, Value string
	Keys               []string
}

// Observer follows the whole relation without being a member of it.
type Observer interface {
	Snapshot(ctx context.Context) (Snapshot, error)
	Close() error
}

// Snapshot is the relation at one revision.
type Snapshot struct {
	Revision   int64
	Leader     string
	Units      map[string]map[string]string // bags of joined units
	LeaderData map[string]string
	// Requests are operators' requests (Store.Request); only the leader and observers
	// see them.
	Requests map[string]string
	// Away holds the notes units left when they departed (Member.LeaveWithNote), of
	// units not joined now; only the leader and observers see them.
	Away map[string]string
	// Left holds when this store saw each unit not joined now leave (it left, or its
	// lease expired), by this process's clock: a departure counts from then, not from
	// when a decision got to it. A unit whose leaving was not seen (it left before the
	// process read the relation) has none. Only the leader and observers see it.
	Left map[string]time.Time
	// Oversized names the units whose bag holds a value over its field's cap
	// (Schema.BagFields), and which; those values count as absent.
	Oversized map[string]string
	// Noisy names the units that wrote their bag more than Schema.WriteBudget times in
	// the last minute or this one, as this store's watch saw it, with how many.
	Noisy map[string]int
	// Changed is closed at the first change after this snapshot.
	Changed <-chan struct{}
}

// Clone returns a deep copy, so a caller may keep a snapshot while the store moves on.
func (s Snapshot) Clone() Snapshot {
	out := s
	out.Units = make(map[string]map[string]string, len(s.Units))
	for unit, bag := range s.Units {
		out.Units[unit] = maps.Clone(bag)
	}
	out.LeaderData = maps.Clone(s.LeaderData)
	if out.LeaderData == nil {
		out.LeaderData = map[string]string{}
	}
	out.Requests = maps.Clone(s.Requests)
	out.Away = maps.Clone(s.Away)
	out.Left = maps.Clone(s.Left)
	out.Oversized = maps.Clone(s.Oversized)
	out.Noisy = maps.Clone(s.Noisy)
	return out
}

// ReadCounter is implemented by stores and members that count what they read from the
// store behind them (etcd's): `up` and the benchmarks report it. A store's counts
// include its members'.
type ReadCounter interface{ ReadCounts() ReadCounts }

// ReadCounts is what has been read: bytes of keys and values by reads and watches, full
// reads of a scope, watch events applied.
type ReadCounts struct{ BytesRead, Reads, Events int64 }

// LazyWake bounds how late a leader learns of a change that does not wake it at once
// (Schema.WakeFields).
const LazyWake = time.Second

// merge applies kv to m: an empty value deletes.
func merge(m, kv map[string]string) {
	for k, v := range kv {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
}

// Split divides leader-data writes by guard: the keys of guards that fail (according to
// holds) are dropped, the rest kept. Stores share it so that guards mean the same on each.
func Split(kv map[string]string, guards []Guard, holds func(Guard) bool) (keep map[string]string, dropped []string) {
	keep = maps.Clone(kv)
	for _, g := range guards {
		if holds(g) {
			continue
		}
		for _, k := range g.Keys {
			if _, ok := keep[k]; ok {
				delete(keep, k)
				dropped = append(dropped, k)
			}
		}
	}
	return keep, dropped
}
