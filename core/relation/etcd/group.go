package etcd

import "sync"

// group is the follower of groupScope that the members of one Store share while they do
// not lead: who leads and the group's CA, sealed CA and CRL are the same for every such
// member, so a process of many units follows them with one watch each instead of one
// each per unit (docs/BENCHMARKS.md counts the watches saved). It runs
// while any member uses it, and wakes every member on each change.
type group struct {
	mu       sync.Mutex
	follower *follower
	members  map[*member]struct{}
}

// joinGroup adds m to the group's members, starting the follower for the first.
func (s *Store) joinGroup(m *member) *follower {
	g := &s.group
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.follower == nil {
		g.members = map[*member]struct{}{}
		g.follower = startFollower(s.client, s.layout, s.layout.groupScope(), s.wakeGroup, nil, s.log, &s.stats, nil)
	}
	g.members[m] = struct{}{}
	return g.follower
}

// leaveGroup takes m out of the group's members; the last one out stops the follower.
func (s *Store) leaveGroup(m *member) {
	g := &s.group
	g.mu.Lock()
	if _, ok := g.members[m]; !ok {
		g.mu.Unlock()
		return
	}
	delete(g.members, m)
	var stop *follower
	if len(g.members) == 0 {
		stop, g.follower = g.follower, nil
	}
	g.mu.Unlock()
	if stop != nil {
		stop.stop()
	}
}

// wakeGroup tells every member of the group that what it follows changed.
func (s *Store) wakeGroup() {
	g := &s.group
	g.mu.Lock()
	members := make([]*member, 0, len(g.members))
	for m := range g.members {
		members = append(members, m)
	}
	g.mu.Unlock()
	for _, m := range members {
		m.notify()
	}
}
