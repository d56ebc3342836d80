package agent

import (
	"context"
	"maps"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// testClock is the time every agent of a test reads: it moves only when the test says,
// so a rule that counts time (ca.revoke_departed_after) is crossed at a step the test
// chose, never by racing a timer.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Departures are judged by the leader's clock against ca.revoke_departed_after: a unit
// whose lease lapsed and that is back within the delay (a network blip, a restart)
// keeps its certificate and is not signed another; one that left saying it will be
// back (NoteBack: an agent stopped by SIGTERM, or run with --once) is not revoked past
// the delay; one gone without a word has every certificate issued to it revoked once
// the delay has passed, in the CRL every unit installs. The end-to-end test
// (cmd/tlsrelay TestDeparturesRevokeWhatUnitsHold) shows the same with real leases.
func TestDeparturesWithinAndPastTheDelay(t *testing.T) {
	const delay = 10 * time.Minute // well inside the certificates' hour: nothing renews meanwhile
	clock := &testClock{now: time.Now()}
	c := newCluster(t)
	c.opts = func(o *Options) { o.Now, o.RevokeDepartedAfter = clock.Now, delay }
	for _, u := range []string{"db/0", "db/1", "db/2", "db/3"} {
		c.start(u)
		c.waitCerts(u) // db/0 joined first: it leads
	}
	held := c.waitCerts("db/1", "db/2", "db/3")
	ctx := context.Background()
	obs, err := c.store.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	pending := func(unit string) func(relation.Snapshot) bool {
		return func(s relation.Snapshot) bool {
			return slices.Contains(revokedSerials(s.LeaderData, unit), held[unit].SerialNumber.Text(16))
		}
	}

	// db/1's lease lapses (its agent stops answering, the store drops it) and it is back
	// before the delay: its revocation, recorded while it was away, is withdrawn.
	c.halt("db/1")
	if err := c.members["db/1"].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	awaitSnapshot(t, obs, "db/1's departure recorded", pending("db/1"))
	c.start("db/1")
	awaitSnapshot(t, obs, "db/1 back, its revocation withdrawn", func(s relation.Snapshot) bool {
		_, joined := s.Units["db/1"]
		return joined && !pending("db/1")(s)
	})
	// db/2 leaves saying it will be back; db/3's lease lapses and it does not return.
	c.halt("db/2")
	if err := c.members["db/2"].LeaveWithNote(ctx, protocol.NoteBack); err != nil {
		t.Fatal(err)
	}
	c.halt("db/3")
	if err := c.members["db/3"].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	awaitSnapshot(t, obs, "db/3's departure recorded", pending("db/3"))

	// Past the delay. A unit joining is the change the leader decides on, at the new time.
	clock.Advance(delay + time.Minute)
	c.start("db/4")
	c.waitCerts("db/4")
	crl := awaitCRL(t, c.dir("db/0"), func(serials []*big.Int) bool {
		return slices.ContainsFunc(serials, func(s *big.Int) bool { return s.Cmp(held["db/3"].SerialNumber) == 0 })
	})
	for _, unit := range []string{"db/1", "db/2"} {
		if slices.ContainsFunc(certutil.Revoked(crl), func(s *big.Int) bool { return s.Cmp(held[unit].SerialNumber) == 0 }) {
			t.Errorf("%s's certificate is revoked: %s", unit, departureStory(unit))
		}
	}
	snap, err := obs.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"db/1", "db/2"} {
		if revs := revokedSerials(snap.LeaderData, unit); len(revs) != 0 {
			t.Errorf("%s has revocations on record %v: %s", unit, revs, departureStory(unit))
		}
		chain, err := certutil.ParseCertificates([]byte(snap.LeaderData[protocol.SignedCertificateKey(unit)]))
		if err != nil || chain[0].SerialNumber.Cmp(held[unit].SerialNumber) != 0 {
			t.Errorf("%s's certificate in leader data is not the one it held (%v): %s", unit, err, departureStory(unit))
		}
	}
	if got := c.waitCerts("db/1")["db/1"]; got.SerialNumber.Cmp(held["db/1"].SerialNumber) != 0 {
		t.Errorf("db/1 holds serial %x after its blip, want %x kept", got.SerialNumber, held["db/1"].SerialNumber)
	}
}

func departureStory(unit string) string {
	if unit == "db/1" {
		return "it was back within the delay"
	}
	return "it left saying it would be back"
}

// revokedSerials lists the serials leader data records as revoked (pending or in force)
// for unit.
func revokedSerials(leaderData map[string]string, unit string) []string {
	var out []string
	for _, r := range protocol.RevocationsOf(leaderData) {
		if r.Unit == unit {
			out = append(out, r.Serial)
		}
	}
	return out
}

// awaitSnapshot waits, woken by each change, until ok holds for the group as an
// observer sees it; the deadline is only for a test that would otherwise hang.
func awaitSnapshot(t *testing.T, obs relation.Observer, what string, ok func(relation.Snapshot) bool) relation.Snapshot {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s, err := obs.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok(s) {
			return s
		}
		select {
		case <-s.Changed:
		case <-deadline:
			t.Fatalf("waiting for %s; leader data holds %v, revocations %+v", what, slices.Sorted(maps.Keys(s.LeaderData)), protocol.RevocationsOf(s.LeaderData))
		}
	}
}
