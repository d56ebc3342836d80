// Package relationtest is the behaviour every relation store must show, run against the
// memory store and against etcd (embedded and external). A store's copy of the relation
// may lag its writes (etcd's arrives by watch), so checks wait for what they expect
// through Snapshot.Changed, bounded by a timeout.
package relationtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// NewStore returns a store on a fresh, empty relation; the store is closed by the caller.
type NewStore func(t *testing.T) relation.Store

// Timeout bounds every wait for a change to arrive.
var Timeout = 20 * time.Second

// Run runs every behaviour as a subtest.
func Run(t *testing.T, newStore NewStore) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, s relation.Store)
	}{
		{"leadership goes to the first eligible unit and passes on leave", leadership},
		{"units that are not eligible never lead", notEligible},
		{"only the leader writes leader data, and it outlives the leader", leaderDataOutlivesLeader},
		{"bags merge and delete per field", bags},
		{"a member reads its own writes at once", readOwnWrites},
		{"a name cannot be joined twice", duplicateJoin},
		{"a non-leader sees only its own bag and keys", narrowView},
		{"guarded writes land only while the bag holds the value", guards},
		{"Changed wakes a waiter", changed},
		{"an observer sees the whole relation", observe},
		{"requests reach the leader and observers, not other units", requests},
		{"a note left on leaving outlives the membership; a join clears it", notes},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			defer s.Close()
			c.run(t, s)
		})
	}
}

// Join joins unit, eligible to lead.
func Join(t *testing.T, s relation.Store, unit string, eligible bool) relation.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	m, err := s.Join(ctx, unit, relation.JoinOptions{LeaderEligible: eligible})
	if err != nil {
		t.Fatalf("join %s: %v", unit, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Leave(ctx)
	})
	return m
}

// Viewer is a member or an observer: anything with snapshots.
type Viewer interface {
	Snapshot(context.Context) (relation.Snapshot, error)
}

// Await waits until cond holds for m's snapshot and returns that snapshot.
func Await(t *testing.T, m Viewer, what string, cond func(relation.Snapshot) bool) relation.Snapshot {
	t.Helper()
	return AwaitWithin(t, m, what, Timeout, cond)
}

// AwaitWithin is Await with its own timeout.
func AwaitWithin(t *testing.T, m Viewer, what string, timeout time.Duration, cond func(relation.Snapshot) bool) relation.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last relation.Snapshot
	for {
		s, err := m.Snapshot(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if cond(s) {
			return s
		}
		last = s
		select {
		case <-s.Changed:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; last snapshot: leader %q, units %v, leader data keys %v",
				what, last.Leader, keysOf(last.Units), keysOf(last.LeaderData))
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func leaderIs(unit string) func(relation.Snapshot) bool {
	return func(s relation.Snapshot) bool { return s.Leader == unit }
}

func leadership(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	b := Join(t, s, "db/1", true)
	c := Join(t, s, "db/2", true)
	Await(t, c, "db/2 to see db/0 lead", leaderIs("db/0"))
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	// Any eligible unit may succeed (etcd's election is first come, not a queue); all
	// see the same one.
	next := Await(t, b, "db/1 or db/2 to lead after db/0 left", func(s relation.Snapshot) bool {
		return s.Leader == "db/1" || s.Leader == "db/2"
	}).Leader
	Await(t, c, "db/2 to see "+next+" lead", leaderIs(next))
	if _, err := a.Snapshot(ctx); !errors.Is(err, relation.ErrNotJoined) {
		t.Fatalf("departed member: err = %v, want ErrNotJoined", err)
	}
}

func notEligible(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "lb/0", false)
	// Alone, with nobody leading, an ineligible unit still writes no leader data.
	if _, err := a.SetLeaderData(ctx, map[string]string{"ca": "forged"}); !errors.Is(err, relation.ErrNotLeader) {
		t.Fatalf("an ineligible unit's leader write with nobody leading: %v, want ErrNotLeader", err)
	}
	b := Join(t, s, "lb/1", true)
	Await(t, b, "lb/1 (eligible, joined second) to lead", leaderIs("lb/1"))
	snap := Await(t, a, "lb/0 to see lb/1 lead", leaderIs("lb/1"))
	if snap.Leader == "lb/0" {
		t.Fatal("an ineligible unit leads")
	}
	if v := snap.LeaderData["ca"]; v != "" {
		t.Fatalf("leader data holds %q, written by an ineligible unit", v)
	}
}

func leaderDataOutlivesLeader(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	b := Join(t, s, "db/1", true)
	if _, err := b.SetLeaderData(ctx, map[string]string{"ca": "x"}); !errors.Is(err, relation.ErrNotLeader) {
		t.Fatalf("follower wrote leader data: err = %v, want ErrNotLeader", err)
	}
	if _, err := a.SetLeaderData(ctx, map[string]string{"ca": "x", "db/1_signed_certificate": "cert"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	snap := Await(t, b, "db/1 to lead with db/0's leader data", func(s relation.Snapshot) bool {
		return s.Leader == "db/1" && s.LeaderData["ca"] == "x"
	})
	if snap.LeaderData["db/1_signed_certificate"] != "cert" {
		t.Fatalf("leader data lost on leader change: %v", snap.LeaderData)
	}
	if _, ok := snap.Units["db/0"]; ok {
		t.Fatal("departed unit's bag is still visible")
	}
}

func bags(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	b := Join(t, s, "db/1", true)
	if err := b.SetUnitData(ctx, map[string]string{"csr": "c", "profile": "peer"}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUnitData(ctx, map[string]string{"profile": ""}); err != nil {
		t.Fatal(err)
	}
	Await(t, a, "db/1's bag to hold only csr=c", func(s relation.Snapshot) bool {
		bag := s.Units["db/1"]
		return bag["csr"] == "c" && len(bag) == 1
	})
}

// readOwnWrites: a write shows in the writer's next Snapshot without waiting for the
// store to echo it; a unit that saw its old value would write it again.
func readOwnWrites(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	b := Join(t, s, "db/1", false)
	for i := range 20 {
		v := fmt.Sprint("csr-", i)
		if err := b.SetUnitData(ctx, map[string]string{"csr": v}); err != nil {
			t.Fatal(err)
		}
		if snap, err := b.Snapshot(ctx); err != nil || snap.Units["db/1"]["csr"] != v {
			t.Fatalf("db/1 wrote csr=%s, its next snapshot holds %q (%v)", v, snap.Units["db/1"]["csr"], err)
		}
		if _, err := a.SetLeaderData(ctx, map[string]string{"ca": v}); err != nil {
			t.Fatal(err)
		}
		if snap, err := a.Snapshot(ctx); err != nil || snap.LeaderData["ca"] != v {
			t.Fatalf("the leader wrote ca=%s, its next snapshot holds %q (%v)", v, snap.LeaderData["ca"], err)
		}
	}
}

func duplicateJoin(t *testing.T, s relation.Store) {
	Join(t, s, "db/0", true)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if m, err := s.Join(ctx, "db/0", relation.JoinOptions{}); err == nil {
		m.Leave(context.Background())
		t.Fatal("joining a name twice succeeded")
	} else if !strings.Contains(err.Error(), "db/0") {
		t.Fatalf("duplicate join error does not name the unit: %v", err)
	}
}

func narrowView(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	b, c := Join(t, s, "db/1", true), Join(t, s, "db/2", true)
	must(t, b.SetUnitData(ctx, map[string]string{"csr": "b"}))
	must(t, c.SetUnitData(ctx, map[string]string{"csr": "c"}))
	Await(t, a, "the leader to see both bags", func(s relation.Snapshot) bool {
		return s.Units["db/1"]["csr"] == "b" && s.Units["db/2"]["csr"] == "c"
	})
	_, err := a.SetLeaderData(ctx, map[string]string{"ca": "x", "ca_sealed": "s",
		"db/1_signed_certificate": "b-cert", "db/2_signed_certificate": "c-cert", "db/2_rejected": "no"})
	must(t, err)
	// One transaction's keys may reach a watcher one key at a time: wait for all of them.
	snap := Await(t, b, "db/1 to see its certificate", func(s relation.Snapshot) bool {
		return s.LeaderData["db/1_signed_certificate"] == "b-cert" && s.LeaderData["ca"] == "x" && s.LeaderData["ca_sealed"] == "s"
	})
	if got := keysOf(snap.Units); !slices.Equal(got, []string{"db/1"}) {
		t.Fatalf("db/1 sees bags %v, want only its own", got)
	}
	if got := keysOf(snap.LeaderData); !slices.Equal(got, []string{"ca", "ca_sealed", "db/1_signed_certificate"}) {
		t.Fatalf("db/1 sees leader data %v, want only ca, ca_sealed and its own certificate", got)
	}
	if snap.Leader != "db/0" {
		t.Fatalf("db/1 sees leader %q, want db/0", snap.Leader)
	}
}

func guards(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	b, c := Join(t, s, "db/1", true), Join(t, s, "db/2", true)
	must(t, b.SetUnitData(ctx, map[string]string{"csr": "old"}))
	must(t, c.SetUnitData(ctx, map[string]string{"csr": "c1"}))
	Await(t, a, "both CSRs", func(s relation.Snapshot) bool {
		return s.Units["db/1"]["csr"] == "old" && s.Units["db/2"]["csr"] == "c1"
	})
	// db/1 sends a new CSR after the leader signed the old one.
	must(t, b.SetUnitData(ctx, map[string]string{"csr": "new"}))
	Await(t, a, "db/1's new CSR", func(s relation.Snapshot) bool { return s.Units["db/1"]["csr"] == "new" })
	dropped, err := a.SetLeaderData(ctx,
		map[string]string{"ca": "x", "db/1_signed_certificate": "for-old", "db/2_signed_certificate": "for-c1"},
		relation.Guard{Unit: "db/1", Field: "csr", Value: "old", Keys: []string{"db/1_signed_certificate"}},
		relation.Guard{Unit: "db/2", Field: "csr", Value: "c1", Keys: []string{"db/2_signed_certificate"}})
	must(t, err)
	if !slices.Equal(dropped, []string{"db/1_signed_certificate"}) {
		t.Fatalf("dropped = %v, want only db/1's certificate", dropped)
	}
	snap := Await(t, a, "the unguarded and holding writes", func(s relation.Snapshot) bool {
		return s.LeaderData["ca"] == "x" && s.LeaderData["db/2_signed_certificate"] == "for-c1"
	})
	if v, ok := snap.LeaderData["db/1_signed_certificate"]; ok {
		t.Fatalf("a certificate for a CSR the unit no longer asks for was published: %q", v)
	}
	// Many guarded writes at once (more than one etcd transaction holds).
	kv := map[string]string{}
	var gs []relation.Guard
	for i := range 150 {
		key := fmt.Sprintf("bulk/%d_signed_certificate", i)
		kv[key] = "v"
		value := "c1"
		if i%50 == 7 {
			value = "stale"
		}
		gs = append(gs, relation.Guard{Unit: "db/2", Field: "csr", Value: value, Keys: []string{key}})
	}
	dropped, err = a.SetLeaderData(ctx, kv, gs...)
	must(t, err)
	if len(dropped) != 3 {
		t.Fatalf("bulk write dropped %d keys, want the 3 with a stale guard: %v", len(dropped), dropped)
	}
	Await(t, a, "147 bulk keys", func(s relation.Snapshot) bool {
		n := 0
		for k := range s.LeaderData {
			if strings.HasPrefix(k, "bulk/") {
				n++
			}
		}
		return n == 147
	})
}

func changed(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	snap := Await(t, a, "db/0 to lead", leaderIs("db/0"))
	select {
	case <-snap.Changed:
		snap = Await(t, a, "a settled view", leaderIs("db/0"))
	default:
	}
	go a.SetUnitData(ctx, map[string]string{"csr": "c"})
	select {
	case <-snap.Changed:
	case <-time.After(Timeout):
		t.Fatal("Changed not closed after a write")
	}
	Await(t, a, "the write", func(s relation.Snapshot) bool { return s.Units["db/0"]["csr"] == "c" })
}

func observe(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	b := Join(t, s, "db/1", false)
	must(t, b.SetUnitData(ctx, map[string]string{"state": "waiting"}))
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	_, err := a.SetLeaderData(ctx, map[string]string{"ca": "x"})
	must(t, err)
	o, err := s.Observe(ctx)
	must(t, err)
	defer o.Close()
	Await(t, o, "the observer to see both units and the CA", func(s relation.Snapshot) bool {
		return s.Leader == "db/0" && s.Units["db/1"]["state"] == "waiting" && s.LeaderData["ca"] == "x" && len(s.Units) == 2
	})
}

func requests(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	b := Join(t, s, "db/1", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	must(t, s.Request(ctx, "ca_rotate", "r1"))
	Await(t, a, "the leader to see the request", func(s relation.Snapshot) bool { return s.Requests["ca_rotate"] == "r1" })
	o, err := s.Observe(ctx)
	must(t, err)
	defer o.Close()
	Await(t, o, "the observer to see the request", func(s relation.Snapshot) bool { return s.Requests["ca_rotate"] == "r1" })
	must(t, b.SetUnitData(ctx, map[string]string{"csr": "b"}))
	snap := Await(t, b, "db/1 to see its bag", func(s relation.Snapshot) bool { return s.Units["db/1"]["csr"] == "b" })
	if len(snap.Requests) != 0 {
		t.Fatalf("a unit that does not lead sees requests %v", snap.Requests)
	}
	must(t, s.Request(ctx, "ca_rotate", ""))
	Await(t, a, "the request to be withdrawn", func(s relation.Snapshot) bool { return s.Requests["ca_rotate"] == "" })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
