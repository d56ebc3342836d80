package protocol

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// No unit holds a CA rotation hostage. A unit that reports a serial the group never
// issued to it, and trusts nothing, is not waited for at all; an honest unit that falls
// silent is waited for ca.rotation_trust_timeout, then named and left to renew in the
// reissue phase; a unit that joins meanwhile is signed once the reissue phase begins; a
// unit that never renews is revoked at the reissue deadline, and the rotation ends.
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

		// A unit that joins in the trust phase waits for the reissue phase: a certificate
		// of the new CA while the old one leads the bundle would be renewed again and
		// again (the simulator's finding).
		g.units = append(g.units, "db/3")
		g.bags["db/3"], g.local["db/3"] = map[string]string{}, &simUnit{parsed: NewParsed()}
		g.settle()
		if c := g.local["db/3"].cert; c != nil {
			t.Fatalf("db/3, joining in the trust phase, was signed by %q before the reissue phase", c.Issuer.CommonName)
		}

		g.later = g.trust
		g.settle()
		if c := g.local["db/3"].cert; c == nil || c.CheckSignatureFrom(g.signer.Cert) != nil {
			t.Fatal("db/3 holds no certificate of the new CA once the reissue phase began")
		}
		rot, _ = DecodeRotation(g.leaderData[KeyCARotation])
		if rot.Phase != PhaseReissue || !slices.Equal(rot.Untrusted, []string{"db/2"}) {
			t.Fatalf("after the trust timeout the rotation is %+v, want the reissue phase naming db/2 as untrusted", rot)
		}
		delete(g.frozen, "db/2") // back: it trusts the bundle, renews like the rest, and the rotation ends
		g.step("db/2")
		g.settle()
		g.allFrom(g.signer)
	})
	t.Run("a unit that never renews holds neither phase past its deadline", func(t *testing.T) {
		// Finding 5 of the one-holder issue: a unit that reports the genuine serial it was
		// issued and never renews kept the reissue phase (which had no deadline) and the
		// old CA for ever. With no timeout configured the defaults bound both phases.
		g := newGroup(t, 3, newCA(t, "group CA"), "db/0", "db/1", "db/2")
		g.settle()
		old := g.signer
		held := g.bags["db/2"][KeySerial]
		g.frozen = map[string]bool{"db/2": true}
		g.request = "r1"
		g.settle()
		if rot, _ := DecodeRotation(g.leaderData[KeyCARotation]); rot.Phase != PhaseTrust {
			t.Fatalf("rotation %+v, want the trust phase", rot)
		}
		if d, _ := g.step(g.leader); !d.WakeAt.Equal(now.Add(DefaultTrustTimeout)) {
			t.Fatalf("the leader wakes at %s, want at the default trust timeout", d.WakeAt)
		}
		g.later = DefaultTrustTimeout
		g.settle()
		rot, _ := DecodeRotation(g.leaderData[KeyCARotation])
		if rot.Phase != PhaseReissue || !slices.Equal(rot.Waiting, []string{"db/2"}) || !rot.ReissueSince.Equal(now.Add(DefaultTrustTimeout)) {
			t.Fatalf("rotation %+v, want the reissue phase since the trust deadline, waiting for db/2", rot)
		}
		deadline := rot.ReissueSince.Add(DefaultReissueTimeout)
		if d, _ := g.step(g.leader); !d.WakeAt.Equal(deadline) || !strings.Contains(d.CAState, "are revoked then") {
			t.Fatalf("the leader wakes at %s (%s), want at the reissue deadline %s, saying what happens then", d.WakeAt, d.CAState, deadline)
		}
		g.later = DefaultTrustTimeout + DefaultReissueTimeout
		g.settle()
		if rec := g.leaderData[KeyCARotation]; rec != "" {
			t.Fatalf("the rotation is still under way past its deadline: %s", rec)
		}
		bundle, _ := certutil.ParseCertificates([]byte(g.leaderData[KeyCA]))
		if len(bundle) != 1 || !bundle[0].Equal(g.signer.Cert) {
			t.Fatalf("the group's bundle holds %d CAs, want the new CA alone", len(bundle))
		}
		var revoked Revocation
		for _, r := range RevocationsOf(g.leaderData) {
			if r.Serial == held {
				revoked = r
			}
		}
		if revoked.Unit != "db/2" || !revoked.Retired || revoked.Reason != ReasonNotReissued {
			t.Fatalf("db/2's certificate %s of the old CA: revocation %+v, want it revoked at once as not reissued", held, revoked)
		}
		for _, u := range []string{"db/0", "db/1"} {
			if cas, _ := certutil.ParseCertificates([]byte(g.local[u].ca)); containsCert(cas, old.Cert.Raw) {
				t.Errorf("%s still trusts the old CA once the rotation ended", u)
			}
		}
	})
}
