package protocol

import (
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// How the signer keeps its CA decides how the group rotates, and no custody stops the
// group: a shared signer makes its next CA itself and never imports or seals; a remote
// CA is followed when its service moves, and `ca rotate` is refused; a signer that can
// make no CA blocks only the rotation, named, while every unit is still signed. (The
// simulation fails the test on any move the signer does not claim.)
func TestRotationForEachCustody(t *testing.T) {
	units := []string{"db/0", "db/1", "db/2"}
	shared := SignerTerms{Custody: sdk.CustodyShared, Generate: true}
	remote := SignerTerms{Custody: sdk.CustodyRemote}
	local := SignerTerms{Custody: sdk.CustodyLocal}

	t.Run("shared: ca rotate has the signer generate the CA; a new leader signs without importing", func(t *testing.T) {
		g := newGroup(t, 1, newCA(t, "group CA"), units...)
		g.terms = shared
		g.settle()
		g.leader = "db/1" // the same token: the same signer
		g.settle()
		g.request = "r1"
		g.settle()
		g.allFrom(g.signer)
		if g.newCAs != 1 {
			t.Errorf("%d new CAs, want 1", g.newCAs)
		}
	})
	t.Run("remote: the group follows its service to another CA", func(t *testing.T) {
		g := newGroup(t, 2, newCA(t, "remote CA"), units...)
		g.terms = remote
		g.settle()
		first := g.leaderData[KeyCA]
		g.signer = newCA(t, "remote CA, next") // the service moved
		g.settle()
		if g.leaderData[KeyCA] != first {
			t.Fatal("the leader followed the remote CA before it loaded it again")
		}
		if d, _ := g.step(g.leader); !d.WakeAt.Equal(now.Add(RemoteCARecheck)) {
			t.Fatalf("the leader wakes at %s, want %s to load the remote CA again", d.WakeAt, now.Add(RemoteCARecheck))
		}
		g.later = RemoteCARecheck
		g.settle()
		if !strings.Contains(strings.Join(g.reasons, "\n"), "remote CA moved") {
			t.Errorf("rotation records %q, want one for the remote CA that moved", g.reasons)
		}
		g.allFrom(g.signer)
	})
	t.Run("remote: ca rotate is refused, and signing goes on", func(t *testing.T) {
		g := newGroup(t, 3, newCA(t, "remote CA"), units...)
		g.terms = remote
		g.settle()
		g.request = "r1"
		g.join("db/3")
		g.settle()
		if g.leaderData[KeyCARequest] != "r1" || !strings.Contains(g.leaderData[KeyCARotateRefused], "remote") {
			t.Fatalf("request r1 answered with %q (acted on: %q), want a refusal naming the remote CA",
				g.leaderData[KeyCARotateRefused], g.leaderData[KeyCARequest])
		}
		if g.local["db/3"].cert == nil || g.newCAs != 0 || g.leaderData[KeyCARotation] != "" {
			t.Fatalf("after the refusal: db/3 signed %t, %d new CAs, rotation %q", g.local["db/3"].cert != nil, g.newCAs, g.leaderData[KeyCARotation])
		}
	})
	t.Run("local: a rotation due is blocked and named, and signing goes on", func(t *testing.T) {
		g := newGroup(t, 4, testCA{caEnding(t, "group CA", now.Add(10*24*time.Hour))}, units...)
		g.terms = local
		g.rotateBefore = 30 * 24 * time.Hour
		g.settle()
		d, _ := g.step(g.leader)
		for _, blocked := range []string{d.CARotationBlocked, g.leaderData[KeyCARotationBlocked]} {
			if !strings.Contains(blocked, "expires at") || !strings.Contains(blocked, "neither import a CA nor generate one") {
				t.Errorf("blocked %q, want the reason and what the signer lacks", blocked)
			}
		}
		g.join("db/3")
		g.settle()
		if g.local["db/3"].cert == nil || g.newCAs != 0 {
			t.Fatalf("db/3 signed %t, %d new CAs; want signed and none", g.local["db/3"].cert != nil, g.newCAs)
		}
		g.rotateBefore = 0 // the operator turns automatic rotation off: nothing is blocked
		g.settle()
		if g.leaderData[KeyCARotationBlocked] != "" {
			t.Errorf("still blocked: %q", g.leaderData[KeyCARotationBlocked])
		}
	})
	t.Run("a signer that says it imports but does not is asked no more", func(t *testing.T) {
		m := LeaderMemory{Signer: exportable}.Step(SignerLacks{Capability: sdk.CapCAImport})
		if m.Signer.cannotRotate() == "" {
			t.Fatal("a signer without import or generate can still rotate")
		}
	})
}
