package etcd

import (
	"encoding/json"
	"time"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// Keys names the keys of one relation for a writer that is not a Store's member: the
// scale benchmark's simulated units (internal/app/swarm), which join and write as an
// agent's member would, many thousands to a process, without a member's watches.
type Keys struct{ l layout }

// KeysOf is the layout of the relation named relationName under the given schema.
func KeysOf(relationName string, schema relation.Schema) Keys {
	return Keys{l: newLayout(relationName, schema)}
}

// Member is the lease-bound key whose presence makes unit a member.
func (k Keys) Member(unit string) string { return k.l.member(unit) }

// Field is one field of unit's bag.
func (k Keys) Field(unit, field string) string { return k.l.field(unit, field) }

// Away is the note a departed unit left.
func (k Keys) Away(unit string) string { return k.l.away(unit) }

// LeaderData is the prefix of every leader-data key.
func (k Keys) LeaderData() string { return k.l.leaderData() }

// LeaderKeyOf is the leader-data key a full key names.
func (k Keys) LeaderKeyOf(key string) string { return k.l.leaderKeyOf(key) }

// Elected is the key naming the leader.
func (k Keys) Elected() string { return k.l.elected() }

// MemberValue is the value a member's key holds, as a join writes it.
func MemberValue(leaderEligible bool, joined time.Time) string {
	b, _ := json.Marshal(memberValue{LeaderEligible: leaderEligible, Joined: joined.UTC()})
	return string(b)
}
