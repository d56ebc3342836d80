package protocol

import (
	"slices"
	"testing"
	"time"
)

// No unit holds a CA rotation hostage. A unit that reports a serial the group never
// issued to it, and trusts nothing, is not waited for at all; an honest unit that falls
// silent is waited for ca.rotation_trust_timeout, then named and left to renew in the
// reissue phase; a unit that joins meanwhile is signed in the trust phase.
func TestRotationNoUnitHoldsHostage(t *testing.T) {
	t.Run("a serial the group never issued", func(t *testing.T) {
		g := newGroup(t, 1, newCA(t, "group CA"), "db/0", "db/1", "db/2")
		g.settle()
		g.frozen = map[string]bool{"db/2": true}
		g.bags["db/2"][KeySerial], g.bags["db/2"][KeyTrusts] = "deadbeef", ""
		g.request = "r1"
		g.settle()
		g.units = []string{"db/0", "db/1"}
		g.allFrom(g.signer)
	})
	t.Run("an honest unit fallen silent", func(t *testing.T) {
		g := newGroup(t, 2, newCA(t, "group CA"), "db/0", "db/1", "db/2")
		g.trust = 10 * time.Minute
		g.settle()
		g.frozen = map[string]bool{"db/2": true}
		g.request = "r1"
		g.settle()
		rot, ok := DecodeRotation(g.leaderData[KeyCARotation])
		if !ok || rot.Phase != PhaseTrust || !slices.Equal(rot.Waiting, []string{"db/2"}) || !rot.Since.Equal(now) {
			t.Fatalf("rotation %+v, want the trust phase since now, waiting for db/2", rot)
		}
		if d, _ := g.step(g.leader); !d.WakeAt.Equal(now.Add(g.trust)) {
			t.Fatalf("the leader wakes at %s, want at the trust timeout %s", d.WakeAt, now.Add(g.trust))
		}

		// A unit that joins in the trust phase is signed, by the new CA.
		g.units = append(g.units, "db/3")
		g.bags["db/3"], g.local["db/3"] = map[string]string{}, &simUnit{parsed: NewParsed()}
		g.settle()
		if c := g.local["db/3"].cert; c == nil || c.CheckSignatureFrom(g.signer.Cert) != nil {
			t.Fatal("db/3, joining in the trust phase, holds no certificate of the new CA")
		}

		g.later = g.trust
		g.settle()
		rot, _ = DecodeRotation(g.leaderData[KeyCARotation])
		if rot.Phase != PhaseReissue || !slices.Equal(rot.Untrusted, []string{"db/2"}) {
			t.Fatalf("after the trust timeout the rotation is %+v, want the reissue phase naming db/2 as untrusted", rot)
		}
		delete(g.frozen, "db/2") // back: it trusts the bundle, renews like the rest, and the rotation ends
		g.step("db/2")
		g.settle()
		g.allFrom(g.signer)
	})
	t.Run("no timeout waits for ever", func(t *testing.T) {
		g := newGroup(t, 3, newCA(t, "group CA"), "db/0", "db/1", "db/2")
		g.settle()
		g.frozen = map[string]bool{"db/2": true}
		g.request = "r1"
		g.later = 100 * time.Hour
		g.settle()
		if rot, _ := DecodeRotation(g.leaderData[KeyCARotation]); rot.Phase != PhaseTrust {
			t.Fatalf("without a trust timeout the rotation is %+v, want still the trust phase", rot)
		}
		// Nor does the leader wake for a deadline there is none of (a wake in the past
		// would have it decide again every second).
		if d, _ := g.step(g.leader); !d.WakeAt.After(now.Add(g.later)) {
			t.Fatalf("without a trust timeout the leader wakes at %s, before its now %s", d.WakeAt, now.Add(g.later))
		}
	})
}
