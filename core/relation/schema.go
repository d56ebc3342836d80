package relation

import (
	"maps"
	"slices"
	"strings"
)

// Schema is what a store must know of the keys the protocol gives meaning to: which
// leader-data keys a unit that does not lead reads, and which bag fields wake a leader at
// once. The protocol owns the keys (protocol.Schema); a store is handed the schema and
// spells none of them itself.
type Schema struct {
	// GroupKeys are the leader-data keys every unit reads alike (the CA bundle, ...).
	GroupKeys []string
	// UnitKeySuffixes make a unit's own leader-data keys: the unit's name, then a suffix
	// (its certificate, its rejection).
	UnitKeySuffixes []string
	// WakeFields are the bag fields whose change wakes a leader at once: a CSR to sign.
	// A change of any other field (a unit's status: its serial and trusted CAs, which
	// revocations and CA rotations wait on) may reach the leader's decisions up to
	// LazyWake later, so that a group publishing its status after issuance does not make
	// the leader decide, O(units) each time, once per unit.
	WakeFields []string
	// BagFields are the fields a unit's bag may hold and the most bytes each value may
	// have. A store keeps no other field, and a value over its cap counts as absent
	// (Snapshot.Oversized says so); nil keeps every field.
	BagFields map[string]int
	// WriteBudget is how many writes of its bag a minute a unit may make before a
	// store names it in Snapshot.Noisy; 0: no budget.
	WriteBudget int
}

// UnitKeys lists a unit's own leader-data keys.
func (s Schema) UnitKeys(unit string) []string {
	keys := make([]string, len(s.UnitKeySuffixes))
	for i, suffix := range s.UnitKeySuffixes {
		keys[i] = unit + suffix
	}
	return keys
}

// NarrowKeys lists the leader-data keys a unit that does not lead reads: the group's,
// then its own.
func (s Schema) NarrowKeys(unit string) []string {
	return append(slices.Clone(s.GroupKeys), s.UnitKeys(unit)...)
}

// UnitOfLeaderKey returns the unit a per-unit leader-data key belongs to.
func (s Schema) UnitOfLeaderKey(key string) (string, bool) {
	for _, suffix := range s.UnitKeySuffixes {
		if unit, ok := strings.CutSuffix(key, suffix); ok && unit != "" {
			return unit, true
		}
	}
	return "", false
}

// WakesLeader says whether a change of a bag field must wake the leader at once.
func (s Schema) WakesLeader(field string) bool { return slices.Contains(s.WakeFields, field) }

// Narrow cuts a whole-relation snapshot down to what unit sees when it does not lead.
func (s Schema) Narrow(snap Snapshot, unit string) Snapshot {
	out := Snapshot{Revision: snap.Revision, Leader: snap.Leader, Changed: snap.Changed,
		Units: map[string]map[string]string{}, LeaderData: map[string]string{}}
	if bag, ok := snap.Units[unit]; ok {
		out.Units[unit] = maps.Clone(bag)
	}
	for _, k := range s.NarrowKeys(unit) {
		if v, ok := snap.LeaderData[k]; ok {
			out.LeaderData[k] = v
		}
	}
	return out
}
