// Package relation is peer messaging for a group of units: each unit's data bag, which
// only that unit writes; leader data, which only the leader writes; who is leader; and a
// way to wait for the next change. The memory Store serves one process (tests, `up`); a
// distributed store serves units on many hosts through the same interface.
package relation

import (
	"context"
	"errors"
	"maps"
)

// ErrNotLeader is returned when a unit that is not the leader writes leader data.
var ErrNotLeader = errors.New("not the leader")

// ErrNotJoined is returned by a member after it has left.
var ErrNotJoined = errors.New("not joined")

// Store is a relation: units join it and become Members.
type Store interface {
	// Join adds a unit to the group. Joining a name that is already joined is an error.
	Join(ctx context.Context, unit string) (Member, error)
	// Close releases the store; members' calls fail afterwards.
	Close() error
}

// Member is one unit's handle on the relation.
type Member interface {
	Unit() string
	// Snapshot is a consistent view of the whole relation.
	Snapshot(ctx context.Context) (Snapshot, error)
	// SetUnitData merges kv into this unit's bag; an empty value deletes the key.
	SetUnitData(ctx context.Context, kv map[string]string) error
	// SetLeaderData merges kv into leader data; an empty value deletes the key. It fails
	// with ErrNotLeader unless this unit is the leader when the write lands.
	SetLeaderData(ctx context.Context, kv map[string]string) error
	// Leave departs the group: the bag is removed and leadership passes on.
	Leave(ctx context.Context) error
}

// Snapshot is the relation at one revision.
type Snapshot struct {
	Revision   int64
	Leader     string
	Units      map[string]map[string]string // bags of joined units
	LeaderData map[string]string
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
	return out
}

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
