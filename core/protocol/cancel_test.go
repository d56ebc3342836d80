package protocol

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// A cancelled rotation takes the group back to its old CA without a failed handshake
// (settle checks every pair after every step), from either phase, with a unit that
// joined meanwhile holding a certificate of the new CA; the new CA's sealed key and the
// record leave leader data, the old CA's sealed key is the group's again. What a leader
// cannot undo it refuses, and says why in the record, and the rotation goes on.
func TestCancelRotation(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(g *group)
		until       string // the phase the rotation reaches before the cancel
		joins       bool   // a unit joins before the cancel
		wantRefusal string // "": the cancel takes the group back
		before      func(g *group, first testCA)
	}{
		{name: "in the trust phase", until: PhaseTrust, joins: true},
		{name: "in the reissue phase", until: PhaseReissue},
		{name: "by a new leader whose signer holds the old CA, without ca_seal", until: PhaseReissue,
			before: func(g *group, first testCA) { g.seal, g.leader, g.signer = false, "db/1", first }},
		{name: "with a signer that cannot import", setup: func(g *group) {
			g.seal, g.terms = false, SignerTerms{Custody: sdk.CustodyShared, Generate: true}
			g.local[g.leader].memory = LeaderMemory{} // the signer is loaded again
		}, until: PhaseTrust, wantRefusal: "cannot import the old one"},
		{name: "without ca_seal", setup: func(g *group) { g.seal = false }, until: PhaseTrust,
			wantRefusal: "no ca_seal key"},
		{name: "of a CA that nears its expiry", setup: func(g *group) { g.rotateBefore = 30 * 24 * time.Hour }, until: PhaseReissue,
			wantRefusal: "would rotate away from it again"},
	}
	for _, tt := range tests {
		for seed := int64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("%s/seed %d", tt.name, seed), func(t *testing.T) {
				first := newCA(t, "group CA")
				if tt.wantRefusal == "would rotate away from it again" {
					first = testCA{caEnding(t, "group CA", now.Add(10*24*time.Hour))}
				}
				g := newGroup(t, seed, first, "db/0", "db/1", "db/2")
				g.seal = true
				g.settle()
				if tt.setup != nil {
					tt.setup(g)
				}
				if g.rotateBefore == 0 {
					g.request = "r1"
				}
				g.stepUntil(tt.until)
				if tt.joins {
					g.join("db/3")
					g.stepUntil(tt.until) // db/3 signed by the new CA
				}
				next := g.signer
				if tt.before != nil {
					tt.before(g, first)
				}
				g.cancel = "c1"
				g.settle()
				if g.leaderData[KeyCACancel] != "c1" {
					t.Fatalf("the cancel was not acted on: leader data %v", keysOf(g.leaderData))
				}
				if tt.wantRefusal != "" {
					if !strings.Contains(strings.Join(g.records, "\n"), tt.wantRefusal) {
						t.Errorf("records %q, want a refusal with %q", g.records, tt.wantRefusal)
					}
					g.allFrom(next)
					return
				}
				g.allFrom(first)
				sealed, _ := caseal.Decode(g.leaderData[KeyCASealed])
				if sealed.CASHA256 != caseal.Fingerprint(first.Cert.Raw) || g.leaderData[KeyCASealedFrom] != "" {
					t.Errorf("after the cancel the sealed key is for %s and the one moved from is %q; want the old CA's and none",
						sealed.CASHA256, g.leaderData[KeyCASealedFrom])
				}
			})
		}
	}
}

// A cancelled rotation is not cancelled back.
func TestCancelOfACancelIsRefused(t *testing.T) {
	g := newGroup(t, 1, newCA(t, "group CA"), "db/0", "db/1", "db/2")
	g.seal = true
	g.settle()
	g.request = "r1"
	g.stepUntil(PhaseReissue)
	g.cancel = "c1"
	g.step(g.leader)
	rot, _ := DecodeRotation(g.leaderData[KeyCARotation])
	if !rot.Cancelled {
		t.Fatalf("rotation %+v after a cancel, want it cancelled", rot)
	}
	g.cancel = "c2"
	g.step(g.leader)
	if rot, _ := DecodeRotation(g.leaderData[KeyCARotation]); !rot.Cancelled || !strings.Contains(rot.CancelRefused, "itself a cancel") {
		t.Fatalf("rotation %+v after a second cancel, want the first cancel going on and the second refused", rot)
	}
}

// stepUntil lets the units decide, in turn, until the rotation record is in phase and
// some unit holds a certificate of the leader's signer's CA in the reissue phase.
func (g *group) stepUntil(phase string) {
	g.t.Helper()
	for i := 0; i < 200; i++ {
		rot, ok := DecodeRotation(g.leaderData[KeyCARotation])
		if ok && rot.Phase == phase && (phase != PhaseReissue || g.someHold(g.signer)) {
			return
		}
		u := g.units[i%len(g.units)]
		g.step(u)
		g.checkHandshakes()
	}
	g.t.Fatalf("the rotation did not reach phase %s: %s", phase, g.leaderData[KeyCARotation])
}

func (g *group) someHold(ca testCA) bool {
	for _, u := range g.units {
		if c := g.local[u].cert; c != nil && c.CheckSignatureFrom(ca.Cert) == nil {
			return true
		}
	}
	return false
}

func (g *group) join(unit string) {
	g.units = append(g.units, unit)
	g.bags[unit], g.local[unit] = map[string]string{}, &simUnit{parsed: NewParsed()}
}

func keysOf(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
