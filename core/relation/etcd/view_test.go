package etcd

import (
	"maps"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// A snapshot is the view as it was when taken: later changes copy what it shares
// instead of writing into it.
func TestSnapshotsKeepWhatTheyWereGiven(t *testing.T) {
	l := newLayout("r", protocol.Schema())
	v := newView(1)
	put := func(key, value string, rev int64) { v.set(l.placeOf(key), value, false, rev) }
	del := func(key string, rev int64) { v.set(l.placeOf(key), "", true, rev) }
	put(l.member("db/0"), "{}", 2)
	put(l.field("db/0", "csr"), "c0", 3)
	put(l.member("db/1"), "{}", 4)
	put(l.elected(), "db/0", 5)
	put(l.leaderKey("ca"), "ca1", 6)
	put(l.request("ca_rotate"), "now", 7)
	put(l.field("db/9", "csr"), "departed", 8) // a bag without its member key
	first := v.snapshot()

	put(l.field("db/0", "csr"), "c0b", 9)
	put(l.field("db/1", "state"), "waiting", 10)
	put(l.leaderKey("ca"), "ca2", 11)
	del(l.request("ca_rotate"), 12)
	del(l.member("db/0"), 13)
	del(l.elected(), 14)
	second := v.snapshot()

	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"first: units", first.Units, map[string]map[string]string{"db/0": {"csr": "c0"}, "db/1": {}}},
		{"first: leader data", first.LeaderData, map[string]string{"ca": "ca1"}},
		{"first: requests", first.Requests, map[string]string{"ca_rotate": "now"}},
		{"first: leader", first.Leader, "db/0"},
		{"first: revision", first.Revision, int64(8)},
		{"second: units", second.Units, map[string]map[string]string{"db/1": {"state": "waiting"}}},
		{"second: leader data", second.LeaderData, map[string]string{"ca": "ca2"}},
		{"second: requests", second.Requests, map[string]string{}},
		{"second: leader", second.Leader, ""},
		{"second: revision", second.Revision, int64(14)},
	} {
		if !equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case map[string]map[string]string:
		return maps.EqualFunc(a, b.(map[string]map[string]string), maps.Equal)
	case map[string]string:
		return maps.Equal(a, b.(map[string]string))
	}
	return a == b
}

// A member writes before its new follower has read anything (an election won at once
// replaces the narrow follower): the write waits for the read, nothing breaks.
func TestWriteBeforeTheFirstRead(t *testing.T) {
	f := &follower{layout: newLayout("r", protocol.Schema()), revs: map[string]int64{}, written: map[int64]time.Time{}, echoed: map[int64]time.Time{}}
	if f.wrote(map[string]string{f.layout.field("db/0", "csr"): "c"}, 5, time.Now()) {
		t.Error("a follower that has read nothing reported a change")
	}
}
