package sim

import (
	"maps"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// state is the relation at one revision. A state in the history is never changed:
// commit copies what a write touches, so a unit may keep reading an old revision.
type state struct {
	rev        int
	bags       map[string]map[string]string // joined units' bags
	leaderData map[string]string
	away       map[string]string // notes of departed units
	requests   map[string]string // operators' requests
	leader     string
	term       int            // the leadership's number: a leader's writes carry it (etcd's elected key)
	leases     map[string]int // a joined unit's lease
}

// store is the relation's history: every revision, so that readers can lag.
type store struct {
	history   []*state
	nextLease int
}

func newStore() *store {
	return &store{history: []*state{{bags: map[string]map[string]string{}, leaderData: map[string]string{},
		away: map[string]string{}, requests: map[string]string{}, leases: map[string]int{}}}}
}

func (s *store) head() *state { return s.history[len(s.history)-1] }

// commit makes the next revision with f's changes; f changes only what it cloned.
func (s *store) commit(f func(next *state)) int {
	next := *s.head()
	next.rev = len(s.history)
	f(&next)
	s.history = append(s.history, &next)
	return next.rev
}

// bagFields are the bag fields a store keeps, and their caps (relation.Schema): a
// value over its cap, or a field the protocol does not know, is dropped as the etcd
// store drops it.
var bagFields = protocol.Schema().BagFields

func (n *state) setBag(unit string, kv map[string]string) {
	n.bags = maps.Clone(n.bags)
	bag := maps.Clone(n.bags[unit])
	if bag == nil {
		bag = map[string]string{}
	}
	for k, v := range kv {
		limit, known := bagFields[k]
		switch {
		case !known:
		case v == "" || len(v) > limit:
			delete(bag, k)
		default:
			bag[k] = v
		}
	}
	n.bags[unit] = bag
}

func (n *state) setLeaderData(kv map[string]string) {
	n.leaderData = maps.Clone(n.leaderData)
	for k, v := range kv {
		if v == "" {
			delete(n.leaderData, k)
		} else {
			n.leaderData[k] = v
		}
	}
}

// join gives unit a new lease and puts bag back (what its member remembers); a note
// it left is cleared.
func (s *store) join(unit string, bag map[string]string) int {
	s.nextLease++
	lease := s.nextLease
	s.commit(func(n *state) {
		n.leases = maps.Clone(n.leases)
		n.leases[unit] = lease
		n.bags = maps.Clone(n.bags)
		n.bags[unit] = map[string]string{}
		n.setBag(unit, bag)
		if _, ok := n.away[unit]; ok {
			n.away = maps.Clone(n.away)
			delete(n.away, unit)
		}
	})
	return lease
}

// depart ends unit's membership: its lease lapsed, or it left with note ("" for none).
// A leader's elected key goes with its lease.
func (s *store) depart(unit, note string) {
	if _, joined := s.head().leases[unit]; !joined {
		return
	}
	s.commit(func(n *state) {
		n.leases = maps.Clone(n.leases)
		delete(n.leases, unit)
		n.bags = maps.Clone(n.bags)
		delete(n.bags, unit)
		if note != "" {
			n.away = maps.Clone(n.away)
			n.away[unit] = note
		}
		if n.leader == unit {
			n.leader = ""
		}
	})
}

// setAway leaves an operator's note for a unit that is not joined (tlsrelay revoke).
func (s *store) setAway(unit, note string) bool {
	if _, joined := s.head().leases[unit]; joined {
		return false
	}
	s.commit(func(n *state) {
		n.away = maps.Clone(n.away)
		n.away[unit] = note
	})
	return true
}

func (s *store) request(name, value string) {
	s.commit(func(n *state) {
		n.requests = maps.Clone(n.requests)
		n.requests[name] = value
	})
}

// elect makes unit the leader, if no joined unit leads.
func (s *store) elect(unit string) bool {
	h := s.head()
	if _, ok := h.leases[h.leader]; ok && h.leader != "" {
		return false
	}
	s.commit(func(n *state) { n.leader, n.term = unit, n.term+1 })
	return true
}

// op is a write in flight: a unit's bag write bound to its lease, or a leader write
// fenced by its term and guarded by bags.
type op struct {
	leader      bool
	lease       int
	term        int
	incarnation int // of the process that wrote it
	kv          map[string]string
	guards      []relation.Guard
	// answered are the digests of the CSRs rejected or signed in kv (leader writes).
	answered []string
	signed   map[string]string // CSR digest by the key of the certificate answering it
	doomed   bool              // its leadership ended while it was in flight: it cannot land
}

// apply lands o from unit, or says why not: a bag write whose lease is gone, a leader
// write whose leadership is gone. Guards that fail drop their keys (dropped).
func (s *store) apply(unit string, o op) (rev int, dropped []string, ok bool) {
	h := s.head()
	if !o.leader {
		if h.leases[unit] != o.lease {
			return 0, nil, false
		}
		return s.commit(func(n *state) { n.setBag(unit, o.kv) }), nil, true
	}
	if h.leader != unit || h.term != o.term {
		return 0, nil, false
	}
	keep, dropped := relation.Split(o.kv, o.guards, func(g relation.Guard) bool {
		return h.bags[g.Unit][g.Field] == g.Value
	})
	if len(keep) == 0 {
		return h.rev, dropped, true
	}
	return s.commit(func(n *state) { n.setLeaderData(keep) }), dropped, true
}
