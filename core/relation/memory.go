package relation

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is a relation held in one process. The leader is the longest-joined
// leader-eligible unit, so leadership moves only when the leader leaves, as with an
// election.
type Memory struct {
	schema     Schema
	mu         sync.Mutex
	closed     bool
	revision   int64
	order      []string // join order of leader-eligible units; order[0] leads
	bags       map[string]map[string]string
	leaderData map[string]string
	requests   map[string]string
	away       map[string]string    // notes of departed units (LeaveWithNote)
	left       map[string]time.Time // when each departed unit left
	changed    chan struct{}
}

// NewMemory returns an empty in-memory relation whose keys have the meaning schema gives
// them (protocol.Schema).
func NewMemory(schema Schema) *Memory {
	return &Memory{
		schema:     schema,
		bags:       map[string]map[string]string{},
		leaderData: map[string]string{},
		requests:   map[string]string{},
		away:       map[string]string{},
		left:       map[string]time.Time{},
		changed:    make(chan struct{}),
	}
}

var _ Store = (*Memory)(nil)

// Join implements Store.
func (m *Memory) Join(_ context.Context, unit string, opts JoinOptions) (Member, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("join %s: relation closed", unit)
	}
	if _, ok := m.bags[unit]; ok {
		return nil, fmt.Errorf("join %s: a unit of that name is already joined", unit)
	}
	if opts.LeaderEligible {
		m.order = append(m.order, unit)
	}
	m.bags[unit] = map[string]string{}
	delete(m.away, unit) // back: whatever note it left is void
	delete(m.left, unit)
	m.bumpLocked()
	return &memoryMember{m: m, unit: unit}, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.bumpLocked()
	return nil
}

// bumpLocked records a change and wakes every waiter.
func (m *Memory) bumpLocked() {
	m.revision++
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Memory) leaderLocked() string {
	if len(m.order) == 0 {
		return ""
	}
	return m.order[0]
}

type memoryMember struct {
	m    *Memory
	unit string
}

func (mm *memoryMember) Unit() string { return mm.unit }

// checkLocked fails once the member has left or the store is closed.
func (mm *memoryMember) checkLocked() error {
	if mm.m.closed {
		return fmt.Errorf("%s: relation closed", mm.unit)
	}
	if _, ok := mm.m.bags[mm.unit]; !ok {
		return fmt.Errorf("%s: %w", mm.unit, ErrNotJoined)
	}
	return nil
}

func (mm *memoryMember) Snapshot(context.Context) (Snapshot, error) {
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := mm.checkLocked(); err != nil {
		return Snapshot{}, err
	}
	snap := m.snapshotLocked()
	if snap.Leader != mm.unit {
		return mm.m.schema.Narrow(snap, mm.unit), nil
	}
	return snap.Clone(), nil
}

func (m *Memory) snapshotLocked() Snapshot {
	return Snapshot{
		Revision:   m.revision,
		Leader:     m.leaderLocked(),
		Units:      m.bags,
		LeaderData: m.leaderData,
		Requests:   m.requests,
		Away:       m.away,
		Left:       m.left,
		Changed:    m.changed,
	}
}

// Request implements Store.
func (m *Memory) Request(_ context.Context, name, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("request %s: relation closed", name)
	}
	merge(m.requests, map[string]string{name: value})
	m.bumpLocked()
	return nil
}

// SetAway implements Store.
func (m *Memory) SetAway(_ context.Context, unit, note string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, joined := m.bags[unit]; joined {
		return fmt.Errorf("note for %s: the unit is joined: %w", unit, ErrJoined)
	}
	merge(m.away, map[string]string{unit: note})
	m.bumpLocked()
	return nil
}

// Observe implements Store.
func (m *Memory) Observe(context.Context) (Observer, error) { return memoryObserver{m}, nil }

type memoryObserver struct{ m *Memory }

func (o memoryObserver) Snapshot(context.Context) (Snapshot, error) {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	if o.m.closed {
		return Snapshot{}, fmt.Errorf("observe: relation closed")
	}
	return o.m.snapshotLocked().Clone(), nil
}

func (o memoryObserver) Close() error { return nil }

func (mm *memoryMember) SetUnitData(_ context.Context, kv map[string]string) error {
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := mm.checkLocked(); err != nil {
		return err
	}
	merge(m.bags[mm.unit], kv)
	m.bumpLocked()
	return nil
}

func (mm *memoryMember) SetLeaderData(_ context.Context, kv map[string]string, guards ...Guard) ([]string, error) {
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := mm.checkLocked(); err != nil {
		return nil, err
	}
	if m.leaderLocked() != mm.unit {
		return nil, fmt.Errorf("%s writes leader data: %w (the leader is %s)", mm.unit, ErrNotLeader, m.leaderLocked())
	}
	keep, dropped := Split(kv, guards, func(g Guard) bool {
		bag, ok := m.bags[g.Unit]
		return ok && bag[g.Field] == g.Value
	})
	merge(m.leaderData, keep)
	m.bumpLocked()
	return dropped, nil
}

func (mm *memoryMember) Leave(ctx context.Context) error { return mm.LeaveWithNote(ctx, "") }

func (mm *memoryMember) LeaveWithNote(_ context.Context, note string) error {
	m := mm.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.bags[mm.unit]; !ok {
		return nil
	}
	delete(m.bags, mm.unit)
	merge(m.away, map[string]string{mm.unit: note})
	m.left[mm.unit] = time.Now()
	m.order = slices.DeleteFunc(m.order, func(u string) bool { return u == mm.unit })
	m.bumpLocked()
	return nil
}
