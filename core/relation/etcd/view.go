package etcd

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// view is a follower's copy in the shape of a relation.Snapshot, kept up to date as
// events arrive, so that a snapshot is a copy of pointers (one per unit) rather than a
// rebuild of every key: the leader takes one per decision, and `up` one per change, of
// a relation of some ten keys per unit.
//
// Snapshots share the view's maps. A map handed out is never written again: the view
// copies it before its next change (copy on write), one bag at a time.
type view struct {
	leader     string
	members    map[string]bool
	bags       map[string]*bag
	leaderData map[string]string
	requests   map[string]string
	away       map[string]string            // notes of units, joined or not; snapshots show those of units not joined
	left       map[string]time.Time         // when this view saw each unit's presence end (relation.Snapshot.Left)
	leftPruned int                          // len(left) after it was last pruned
	oversized  map[string]map[string]string // by unit and field: a value over its cap, described
	writes     map[string]*writeRate        // bag writes by unit, when the schema has a budget
	budget     int                          // relation.Schema.WriteBudget
	rev        int64                        // the newest revision seen
	// leaderDataOut and requestsOut: the map was handed out in a snapshot.
	leaderDataOut, requestsOut bool
}

// bag is one unit's fields; out says it was handed out in a snapshot.
type bag struct {
	fields map[string]string
	out    bool
}

func newView(rev int64) *view {
	return &view{members: map[string]bool{}, bags: map[string]*bag{}, leaderData: map[string]string{},
		requests: map[string]string{}, away: map[string]string{}, rev: rev}
}

// set applies a put (or, with deleted, a delete) of a key at place p and revision rev.
func (v *view) set(p place, value string, deleted bool, rev int64) {
	v.rev = max(v.rev, rev)
	if p.kind == placeField {
		v.count(p.unit, deleted) // a write without a lease is a write all the same
	}
	if p.unleased {
		value, deleted = "", true
	}
	switch p.kind {
	case placeElected:
		v.leader = value // "" when deleted
	case placeMember:
		if deleted {
			if v.members[p.unit] {
				v.sawLeave(p.unit, time.Now())
			}
			delete(v.members, p.unit)
		} else {
			v.members[p.unit] = true
			delete(v.left, p.unit)
		}
	case placeField:
		deleted = v.capped(p, value, deleted)
		v.setField(p.unit, p.field, value, deleted)
	case placeAway:
		deleted = v.capped(p, value, deleted)
		setOrDelete(v.away, p.unit, value, deleted)
	case placeLeaderData:
		if v.leaderDataOut {
			v.leaderData, v.leaderDataOut = maps.Clone(v.leaderData), false
		}
		setOrDelete(v.leaderData, p.field, value, deleted)
	case placeRequest:
		if v.requestsOut {
			v.requests, v.requestsOut = maps.Clone(v.requests), false
		}
		setOrDelete(v.requests, p.field, value, deleted)
	}
}

// leftKept is how long a departure's time is kept for units that do not come back:
// longer than any sane ca.revoke_departed_after; a departure older than that counts from
// the decision that meets it, as it did before this view knew.
const leftKept = 24 * time.Hour

// sawLeave records that unit's presence ended at, pruning, once the map has doubled
// since it was last pruned, what is older than leftKept.
func (v *view) sawLeave(unit string, at time.Time) {
	if v.left == nil {
		v.left = map[string]time.Time{}
	}
	v.left[unit] = at
	if len(v.left) > 2*v.leftPruned+1024 {
		maps.DeleteFunc(v.left, func(_ string, t time.Time) bool { return at.Sub(t) > leftKept })
		v.leftPruned = len(v.left)
	}
}

func (v *view) setField(unit, field, value string, deleted bool) {
	b := v.bags[unit]
	switch {
	case b == nil && deleted:
		return
	case b == nil:
		b = &bag{fields: map[string]string{}}
		v.bags[unit] = b
	case b.out:
		b.fields, b.out = maps.Clone(b.fields), false
	}
	setOrDelete(b.fields, field, value, deleted)
	if len(b.fields) == 0 {
		delete(v.bags, unit)
	}
}

// writeRate counts a unit's bag writes in the current minute and the one before.
type writeRate struct {
	start      time.Time
	now, prior int
}

// count counts one write (not a delete) of unit's bag against the budget.
func (v *view) count(unit string, deleted bool) {
	if v.budget == 0 || deleted {
		return
	}
	if v.writes == nil {
		v.writes = map[string]*writeRate{}
	}
	r, now := v.writes[unit], time.Now()
	switch {
	case r == nil:
		r = &writeRate{start: now}
		v.writes[unit] = r
	case now.Sub(r.start) >= 2*time.Minute:
		*r = writeRate{start: now}
	case now.Sub(r.start) >= time.Minute:
		*r = writeRate{start: r.start.Add(time.Minute), prior: r.now}
	}
	r.now++
}

// noisy names the units over the budget, and forgets those quiet for two minutes.
func (v *view) noisy() map[string]int {
	var out map[string]int
	now := time.Now()
	for unit, r := range v.writes {
		if now.Sub(r.start) >= 2*time.Minute {
			delete(v.writes, unit)
			continue
		}
		if n := max(r.now, r.prior); n > v.budget {
			if out == nil {
				out = map[string]int{}
			}
			out[unit] = n
		}
	}
	return out
}

// capped notes a value over its field's cap, which counts as a delete (the field is not
// kept), and forgets the note once the field holds a value within it or none.
func (v *view) capped(p place, value string, deleted bool) bool {
	field := p.field
	if p.kind == placeAway {
		field = awayField
	}
	over := !deleted && p.cap > 0 && len(value) > p.cap
	switch {
	case over && v.oversized == nil:
		v.oversized = map[string]map[string]string{}
		fallthrough
	case over && v.oversized[p.unit] == nil:
		v.oversized[p.unit] = map[string]string{}
	}
	if over {
		v.oversized[p.unit][field] = fmt.Sprintf("%s: %d bytes, more than %d", field, len(value), p.cap)
		return true
	}
	if fields := v.oversized[p.unit]; fields != nil {
		delete(fields, field)
		if len(fields) == 0 {
			delete(v.oversized, p.unit)
		}
	}
	return deleted
}

func setOrDelete(m map[string]string, k, value string, deleted bool) {
	if deleted {
		delete(m, k)
	} else {
		m[k] = value
	}
}

// snapshot hands out the view: joined units' bags (a bag whose member key is gone is a
// departed unit's, on its way out), leader data and requests.
func (v *view) snapshot() relation.Snapshot {
	units := make(map[string]map[string]string, len(v.members))
	for unit := range v.members {
		if b := v.bags[unit]; b != nil {
			b.out = true
			units[unit] = b.fields
		} else {
			units[unit] = map[string]string{}
		}
	}
	v.leaderDataOut, v.requestsOut = true, true
	var away map[string]string
	for unit, note := range v.away {
		if !v.members[unit] {
			if away == nil {
				away = map[string]string{}
			}
			away[unit] = note
		}
	}
	var left map[string]time.Time
	for unit, at := range v.left {
		if !v.members[unit] {
			if left == nil {
				left = map[string]time.Time{}
			}
			left[unit] = at
		}
	}
	var oversized map[string]string
	for unit, fields := range v.oversized {
		if oversized == nil {
			oversized = map[string]string{}
		}
		oversized[unit] = strings.Join(slices.Sorted(maps.Values(fields)), "; ")
	}
	return relation.Snapshot{Revision: v.rev, Leader: v.leader, Units: units, LeaderData: v.leaderData, Requests: v.requests, Away: away, Left: left, Oversized: oversized, Noisy: v.noisy()}
}
