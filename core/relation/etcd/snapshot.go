package etcd

import (
	"context"
	"fmt"
	"maps"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

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

// Snapshot implements relation.Member.
func (m *member) Snapshot(ctx context.Context) (relation.Snapshot, error) {
	changed := m.current() // first, so a change after the read below closes it
	var f, group *follower
	var leading bool
	for {
		var left bool
		m.mu.Lock()
		f, group, leading, left = m.follower, m.group, m.leadingLocked(), m.left
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
