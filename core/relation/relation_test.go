package relation

import (
	"reflect"
	"testing"
)

var testSchema = Schema{GroupKeys: []string{"ca", "crl"}, UnitKeySuffixes: []string{"_cert", "_rejected"}, WakeFields: []string{"csr"}}

// What a non-leader reads of leader data is the group's keys and its own, no more: the
// etcd store follows the two through different watches.
func TestSchemaKeys(t *testing.T) {
	if got, want := testSchema.NarrowKeys("db/1"), []string{"ca", "crl", "db/1_cert", "db/1_rejected"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("NarrowKeys = %v, want %v", got, want)
	}
	for key, want := range map[string]string{"db/1_cert": "db/1", "db/10_rejected": "db/10", "ca": "", "_cert": ""} {
		if unit, ok := testSchema.UnitOfLeaderKey(key); unit != want || ok != (want != "") {
			t.Errorf("UnitOfLeaderKey(%q) = %q, %v; want %q", key, unit, ok, want)
		}
	}
	if !testSchema.WakesLeader("csr") || testSchema.WakesLeader("state") {
		t.Error("WakesLeader: want csr only")
	}
	snap := Snapshot{Leader: "db/0", Units: map[string]map[string]string{"db/0": {"csr": "a"}, "db/1": {"csr": "b"}},
		LeaderData: map[string]string{"ca": "CA", "db/0_cert": "zero", "db/1_cert": "one", "secret": "x"}}
	got := testSchema.Narrow(snap, "db/1")
	if want := map[string]string{"ca": "CA", "db/1_cert": "one"}; !reflect.DeepEqual(got.LeaderData, want) {
		t.Errorf("Narrow leader data = %v, want %v", got.LeaderData, want)
	}
	if len(got.Units) != 1 || got.Units["db/1"]["csr"] != "b" {
		t.Errorf("Narrow units = %v, want db/1's bag only", got.Units)
	}
}
