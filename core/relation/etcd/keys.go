package etcd

import (
	"strings"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// layout names every key of one relation. Under /tlsrelay/<relation>/:
//
//	members/<unit>         lease-bound: the unit is joined while its lease lives
//	units/<unit>/<field>   lease-bound: the unit's bag, one key per field
//	units/<unit>/.away     not lease-bound: the note the unit left when it departed
//	                       (LeaveWithNote); its next join deletes it
//	leader/<key>           leader data; outlives every lease, so a new leader inherits it
//	elected                who leads now: created only where absent, bound to the leader's
//	                       lease; its create revision fences every leader write
//	requests/<name>        operators' requests to the leader (tlsrelay ca rotate)
//
// Unit names hold a '/' (db/0), fields never do, so a bag key splits at its last '/'.
//
// Which leader-data keys a unit that does not lead reads, and which bag fields wake a
// leader, the protocol's schema says.
type layout struct {
	prefix string
	schema relation.Schema
}

func newLayout(relationName string, schema relation.Schema) layout {
	return layout{prefix: "/tlsrelay/" + relationName + "/", schema: schema}
}

func (l layout) members() string               { return l.prefix + "members/" }
func (l layout) member(unit string) string     { return l.members() + unit }
func (l layout) units() string                 { return l.prefix + "units/" }
func (l layout) bag(unit string) string        { return l.units() + unit + "/" }
func (l layout) field(unit, f string) string   { return l.bag(unit) + f }
func (l layout) away(unit string) string       { return l.bag(unit) + awayField }
func (l layout) leaderData() string            { return l.prefix + "leader/" }
func (l layout) leaderKey(key string) string   { return l.leaderData() + key }
func (l layout) requests() string              { return l.prefix + "requests/" }
func (l layout) request(name string) string    { return l.requests() + name }
func (l layout) elected() string               { return l.prefix + "elected" }
func (l layout) everything() string            { return l.prefix }
func (l layout) isElected(key string) bool     { return key == l.elected() }
func (l layout) memberOf(key string) string    { return strings.TrimPrefix(key, l.members()) }
func (l layout) leaderKeyOf(key string) string { return strings.TrimPrefix(key, l.leaderData()) }

// fieldOf splits units/<unit>/<field>.
func (l layout) fieldOf(key string) (unit, field string, ok bool) {
	rest, ok := strings.CutPrefix(key, l.units())
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// awayField is the bag key of a departed unit's note: no field of the protocol's starts
// with a dot.
const awayField = ".away"

// place is where a key belongs in a relation.Snapshot.
type place struct {
	kind        placeKind
	unit, field string // a member's unit; a bag field's unit and field; a leader-data or request key's name in field
	cap         int    // the most bytes a bag field's value may have; 0: no cap
	unleased    bool   // a member key or bag field bound to no lease: absent (placeOfKV)
}

// awayCap bounds a departed unit's note (protocol.NoteBack, NoteGone).
const awayCap = 64

type placeKind uint8

const (
	placeOther placeKind = iota
	placeElected
	placeMember
	placeField
	placeLeaderData
	placeRequest
	placeAway
)

// placeOf classifies a key of the relation.
func (l layout) placeOf(key string) place {
	switch {
	case l.isElected(key):
		return place{kind: placeElected}
	case strings.HasPrefix(key, l.members()):
		return place{kind: placeMember, unit: l.memberOf(key)}
	case strings.HasPrefix(key, l.leaderData()):
		return place{kind: placeLeaderData, field: l.leaderKeyOf(key)}
	case strings.HasPrefix(key, l.requests()):
		return place{kind: placeRequest, field: strings.TrimPrefix(key, l.requests())}
	}
	if unit, field, ok := l.fieldOf(key); ok {
		if strings.Count(unit, "/") != 1 {
			return place{} // no unit's name (application/number): a sub-key, kept by no one
		}
		if field == awayField {
			return place{kind: placeAway, unit: unit, cap: awayCap}
		}
		if l.schema.BagFields == nil {
			return place{kind: placeField, unit: unit, field: field}
		}
		cap, known := l.schema.BagFields[field]
		if !known {
			return place{} // a field the protocol does not know: not kept
		}
		return place{kind: placeField, unit: unit, field: field, cap: cap}
	}
	return place{}
}

// placeOfKV is placeOf for a key read with its value. A member key or a bag field bound
// to no lease would outlive its unit (a member for ever; a CSR back in the bag of a unit
// that returns), so it counts as absent: as deleted, so that a watch that saw the
// leased value before it and a read after agree.
func (l layout) placeOfKV(kv *mvccpb.KeyValue) place {
	p := l.placeOf(string(kv.Key))
	if (p.kind == placeMember || p.kind == placeField) && kv.Lease == 0 {
		p.unleased = true
	}
	return p
}

// Stats counts what followers read from etcd, for benchmarks: a store's (all its
// members and observers) or one member's.
type Stats struct {
	BytesRead atomic.Int64 // keys and values received, by reads and watches
	Reads     atomic.Int64 // full reads of a scope
	Events    atomic.Int64 // watch events applied
	parent    *Stats       // the store's, which counts each member's too
}

// counts reads the counters as the relation reports them.
func (s *Stats) counts() relation.ReadCounts {
	return relation.ReadCounts{BytesRead: s.BytesRead.Load(), Reads: s.Reads.Load(), Events: s.Events.Load()}
}

func (s *Stats) add(bytes, reads, events int64) {
	for ; s != nil; s = s.parent {
		s.BytesRead.Add(bytes)
		s.Reads.Add(reads)
		s.Events.Add(events)
	}
}

// scope is the set of keys a follower reads and watches.
type scope struct {
	keys     []string
	prefixes []string
	wide     bool // the whole relation (a leader's or an observer's)
}

// narrowScope is what a unit that does not lead follows of its own: O(1) keys, whatever
// the size of the group. It reads the rest of what it sees, the same for every such unit,
// through its process's follower of groupScope.
func (l layout) narrowScope(unit string) scope {
	s := scope{keys: []string{l.member(unit)}, prefixes: []string{l.bag(unit)}}
	for _, k := range l.schema.UnitKeys(unit) {
		s.keys = append(s.keys, l.leaderKey(k))
	}
	return s
}

// groupScope is what every unit that does not lead reads alike: who leads, and the
// group's keys of leader data (the schema's GroupKeys: the CA, sealed CA, CRL and chain).
func (l layout) groupScope() scope {
	s := scope{keys: []string{l.elected()}}
	for _, k := range l.schema.GroupKeys {
		s.keys = append(s.keys, l.leaderKey(k))
	}
	return s
}

// wideScope is what the leader and observers follow: the whole relation.
func (l layout) wideScope() scope {
	return scope{keys: []string{l.elected()}, prefixes: []string{l.members(), l.units(), l.leaderData(), l.requests()}, wide: true}
}
