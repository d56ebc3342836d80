package etcd

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/policy"
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

// readFollower is a follower that has made its first read (at revision 1), as a leader's:
// the units' status fields do not wake it at once. notified counts its notifications.
func readFollower(notified *atomic.Int32) *follower {
	l := newLayout("r", protocol.Schema())
	f := &follower{layout: l, wakes: l.leaderWakes, notify: func() { notified.Add(1) },
		revs: map[string]int64{}, written: map[int64]time.Time{}, echoed: map[int64]time.Time{}, view: newView(1)}
	f.view.set(l.placeOf(l.member("db/0")), "{}", false, 1)
	return f
}

// A member's own write wakes it by the watch's rule: a status field not at once (within
// lazyWake, and then once), a CSR at once.
func TestOwnWritesWakeByTheWatchRule(t *testing.T) {
	defer SetLazyWake(50 * time.Millisecond)()
	var notified atomic.Int32
	f := readFollower(&notified)
	defer stopLazy(f)
	if f.wrote(map[string]string{f.layout.field("db/0", "state"): "busy"}, 2, time.Now()) {
		t.Error("a status write asked to wake the leader at once")
	}
	if f.snapshot().Units["db/0"]["state"] != "busy" {
		t.Error("the status write is not in the member's own view")
	}
	deadline := time.Now().Add(10 * time.Second)
	for notified.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if notified.Load() != 1 {
		t.Fatalf("notified %d times after a status write, want once, within the lazy wake", notified.Load())
	}
	if !f.wrote(map[string]string{f.layout.field("db/0", "csr"): "CSR"}, 3, time.Now()) {
		t.Error("a CSR write did not ask to wake the leader at once")
	}
}

// An event older than what a member wrote itself is not applied: the view never goes
// back to an earlier value of a key.
func TestAnEarlierEventDoesNotUndoAWrite(t *testing.T) {
	var notified atomic.Int32
	f := readFollower(&notified)
	defer stopLazy(f)
	key := f.layout.field("db/0", "csr")
	f.wrote(map[string]string{key: "second"}, 6, time.Now())
	f.apply([]*clientv3.Event{{Type: clientv3.EventTypePut, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: []byte("first"), ModRevision: 5}}})
	if got := f.snapshot().Units["db/0"]["csr"]; got != "second" {
		t.Fatalf("the bag's csr is %q after an earlier event, want the later write", got)
	}
}

func stopLazy(f *follower) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lazy != nil {
		f.lazy.Stop()
	}
}

// A bag holds only the fields the schema knows, each within its cap; a value over it
// counts as absent and is named in Oversized until a value within it replaces it. Keys
// under no unit's name are kept by no one, and a member key or field without a lease
// counts as absent (it would outlive the unit), even after a leased value.
func TestBagsAreBounded(t *testing.T) {
	l := newLayout("r", protocol.Schema())
	v := newView(1)
	put := func(key, value string, lease int64, rev int64) {
		v.set(l.placeOfKV(&mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), Lease: lease}), value, false, rev)
	}
	huge := string(make([]byte, protocol.Schema().BagFields[protocol.KeyError]+1))
	put(l.member("db/0"), "{}", 7, 2)
	put(l.field("db/0", protocol.KeyState), "ok", 7, 3)
	put(l.field("db/0", "filler"), "x", 7, 4)                    // unknown field
	put(l.prefix+"units/db/0/x/csr", "sub-key", 7, 5)            // no unit's name
	put(l.field("db/0", protocol.KeyError), huge, 7, 6)          // over its cap
	put(l.member("ghost/0"), "{}", 0, 7)                         // no lease
	put(l.field("ghost/0", protocol.KeyState), "haunting", 0, 8) // its bag
	put(l.field("db/0", protocol.KeyCSR), "a leased CSR", 7, 10)
	put(l.field("db/0", protocol.KeyCSR), "a CSR to outlive it", 0, 11) // replaced without a lease
	put(l.field("db/0", protocol.KeyTrusts), "unleased", 0, 12)
	s := v.snapshot()
	if want := (map[string]map[string]string{"db/0": {protocol.KeyState: "ok"}}); !equal(s.Units, want) {
		t.Errorf("units = %v, want %v", s.Units, want)
	}
	if got := s.Oversized["db/0"]; got != "error: 4097 bytes, more than 4096" {
		t.Errorf("oversized = %q", got)
	}
	put(l.field("db/0", protocol.KeyError), "disk full", 7, 9)
	if s := v.snapshot(); s.Oversized != nil || s.Units["db/0"][protocol.KeyError] != "disk full" {
		t.Errorf("after a value within the cap: units %v, oversized %v", s.Units, s.Oversized)
	}
}

// A unit that writes its bag more often than the budget is named, with its count; one
// within it is not.
func TestNoisyUnitsAreNamed(t *testing.T) {
	l := newLayout("r", protocol.Schema())
	v := newView(1)
	v.budget = 3
	for i := range 5 {
		v.set(l.placeOf(l.field("db/0", protocol.KeyError)), fmt.Sprint(i), false, int64(i+2))
	}
	v.set(l.placeOf(l.field("db/1", protocol.KeyState)), "ok", false, 9)
	for i := range 4 { // without a lease: ignored as a value, counted as a write
		key := l.field("db/2", protocol.KeyCSR)
		v.set(l.placeOfKV(&mvccpb.KeyValue{Key: []byte(key), Value: []byte("x")}), "x", false, int64(i+10))
	}
	if got := v.snapshot().Noisy; !maps.Equal(got, map[string]int{"db/0": 5, "db/2": 4}) {
		t.Fatalf("noisy = %v, want db/0 with 5 writes and db/2 with 4", got)
	}
}

// Every cap is exact: a value of the cap's length is kept, one byte more is not. The
// table is the schema itself, so a field whose cap is dropped (the CSR's lived through
// the test above) or compared off by one fails here.
func TestEveryCapIsExact(t *testing.T) {
	l := newLayout("r", protocol.Schema())
	caps := maps.Clone(protocol.Schema().BagFields)
	caps[awayField] = awayCap
	if caps[protocol.KeyCSR] != policy.LimitCSRBytes {
		t.Fatalf("the CSR's cap is %d, want policy.LimitCSRBytes (%d)", caps[protocol.KeyCSR], policy.LimitCSRBytes)
	}
	for _, field := range slices.Sorted(maps.Keys(caps)) {
		t.Run(field, func(t *testing.T) {
			v := newView(1)
			if field != awayField { // a note is read only of a unit that is gone
				v.set(l.placeOfKV(&mvccpb.KeyValue{Key: []byte(l.member("db/0")), Value: []byte("{}"), Lease: 7}), "{}", false, 2)
			}
			key := l.field("db/0", field)
			for i, n := range []int{caps[field], caps[field] + 1} {
				value := strings.Repeat("x", n)
				v.set(l.placeOf(key), value, false, int64(3+i))
				s := v.snapshot()
				kept := s.Units["db/0"][field] == value
				if field == awayField {
					kept = s.Away["db/0"] == value
				}
				if over := n > caps[field]; kept == over || (s.Oversized["db/0"] != "") != over {
					t.Errorf("%d bytes (cap %d): kept %v, oversized %q", n, caps[field], kept, s.Oversized["db/0"])
				}
			}
		})
	}
}

// A member whose presence ends (deleted, or its lease expired) is in Left with when the
// view saw it go, until it joins again; one never seen joined is not.
func TestLeftIsWhenTheViewSawAUnitGo(t *testing.T) {
	l := newLayout("r", protocol.Schema())
	v := newView(1)
	member := func(unit string) place {
		return l.placeOfKV(&mvccpb.KeyValue{Key: []byte(l.member(unit)), Value: []byte("{}"), Lease: 7})
	}
	v.set(member("db/1"), "{}", false, 2)
	before := time.Now()
	v.set(l.placeOf(l.member("db/1")), "", true, 3)
	v.set(l.placeOf(l.member("db/2")), "", true, 4) // never seen joined
	s := v.snapshot()
	if at, ok := s.Left["db/1"]; !ok || at.Before(before) || at.After(time.Now()) || len(s.Left) != 1 {
		t.Fatalf("left = %v; want db/1 alone, at the time its member key went", s.Left)
	}
	v.set(member("db/1"), "{}", false, 5)
	if s := v.snapshot(); len(s.Left) != 0 {
		t.Fatalf("left after db/1 joined again = %v, want none", s.Left)
	}
}
