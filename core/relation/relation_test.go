package relation

import (
	"slices"
	"testing"
)

// What a non-leader reads of leader data is the group's keys and its own, no more: the
// etcd store follows the two through different watches.
func TestNarrowKeysAreTheGroupsAndTheUnits(t *testing.T) {
	got := NarrowKeys("db/1")
	both := append(GroupKeys(), UnitKeys("db/1")...)
	slices.Sort(got)
	slices.Sort(both)
	if !slices.Equal(got, both) {
		t.Fatalf("NarrowKeys = %v, GroupKeys and UnitKeys = %v", got, both)
	}
	for _, k := range GroupKeys() {
		if _, ok := UnitOfLeaderKey(k); ok {
			t.Errorf("group key %q names a unit", k)
		}
	}
}
