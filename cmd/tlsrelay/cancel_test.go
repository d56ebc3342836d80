package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A CA rotation under way is cancelled (tlsrelay ca rotate --cancel): a unit is frozen so
// the trust phase waits, a unit joining meanwhile waits too (the trust phase signs
// nothing), then the cancel takes the group back to the old CA, imported from its sealed
// copy. The joined unit is signed under the old CA, the new CA leaves every bundle, and no
// handshake between the running units fails throughout.
func TestCancelARotationUnderWay(t *testing.T) {
	t.Parallel()
	// A lease that outlives the test: the frozen unit stays in the group, and holds the
	// trust phase.
	ag, obs, _ := embeddedGroup(t, "cancel", 60*time.Second, "certificate: {validity: 1h}\n", true)
	units := []string{"web/0", "web/1", "web/2"}
	for _, u := range units {
		ag.start(u)
	}
	snap := awaitObs(t, obs, "3 units with certificates", time.Minute, func(s relation.Snapshot) bool {
		return available(s, "web/0") && available(s, "web/1") && available(s, "web/2")
	})
	oldCA := caFingerprint(t, snap.LeaderData[protocol.KeyCA])
	frozen := "web/2"
	if snap.Leader == frozen {
		frozen = "web/1"
	}
	ag.signal(frozen, syscall.SIGSTOP)
	t.Cleanup(func() { ag.signal(frozen, syscall.SIGCONT) })
	running := []string{"web/0", "web/1", "web/2", "web/3"}
	running = removeUnit(running, frozen)

	if r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--wait=false"); r.code != 0 {
		t.Fatalf("ca rotate exited %d: %s", r.code, r.stderr)
	}
	awaitObs(t, obs, "the trust phase, waiting for "+frozen, time.Minute, func(s relation.Snapshot) bool {
		rot, ok := protocol.DecodeRotation(s.LeaderData[protocol.KeyCARotation])
		return ok && rot.Phase == protocol.PhaseTrust && strings.Contains(strings.Join(rot.Waiting, ","), frozen)
	})
	ag.start("web/3")
	// It waits, with its CSR published, for as long as the trust phase lasts.
	snap = awaitObs(t, obs, "web/3 waiting in the trust phase", time.Minute, func(s relation.Snapshot) bool {
		return s.Units["web/3"][protocol.KeyState] == string(protocol.StateAwaitingCertificate) && s.Units["web/3"][protocol.KeyCSR] != ""
	})
	if rot, _ := protocol.DecodeRotation(snap.LeaderData[protocol.KeyCARotation]); rot.Phase != protocol.PhaseTrust ||
		snap.LeaderData[protocol.SignedCertificateKey("web/3")] != "" {
		t.Fatalf("web/3 joined in the trust phase (now %q) and was signed", rot.Phase)
	}
	h := startHandshakes(t, ag, removeUnit(running, "web/3"))
	time.Sleep(time.Second)

	r := runBinary(t, ag.bin, "ca", "rotate", "--cancel", "--config", ag.config, "--timeout", "2m")
	if r.code != 0 || !strings.Contains(r.stdout, "the leader cancels the CA rotation") || !strings.Contains(r.stdout, "done: the group signs with CA "+oldCA) {
		t.Fatalf("ca rotate --cancel exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	snap = awaitObs(t, obs, "every running unit on the old CA alone", time.Minute, func(s relation.Snapshot) bool {
		for _, u := range running {
			if !available(s, u) || s.Units[u][protocol.KeyTrusts] != oldCA {
				return false
			}
		}
		return protocol.TrustsOf(s.LeaderData[protocol.KeyCA]) == oldCA
	})
	if !signedBy(t, snap, "web/3", oldCA) {
		t.Error("web/3 was not signed under the old CA")
	}
	sealed, _ := caseal.Decode(snap.LeaderData[protocol.KeyCASealed])
	if sealed.CASHA256 != oldCA || snap.LeaderData[protocol.KeyCASealedFrom] != "" || snap.LeaderData[protocol.KeyCARotation] != "" {
		t.Errorf("after the cancel leader data seals CA %s (want the old %s), keeps a sealed key moved from: %t, a rotation: %q",
			sealed.CASHA256, oldCA, snap.LeaderData[protocol.KeyCASealedFrom] != "", snap.LeaderData[protocol.KeyCARotation])
	}
	time.Sleep(time.Second) // handshakes on the final files
	if failures := h.stop(); len(failures) > 0 {
		t.Fatalf("%d of %d handshakes failed; first: %s", len(failures), h.count.Load(), failures[0])
	}
	if n := h.count.Load(); n < 20 {
		t.Fatalf("only %d handshakes: too few to tell", n)
	}
	for _, u := range running {
		caPEM, err := os.ReadFile(filepath.Join(ag.unitDir(u), "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if got := protocol.TrustsOf(string(caPEM)); got != oldCA {
			t.Errorf("%s's ca.crt trusts %s, want the old CA %s alone", u, got, oldCA)
		}
	}
}

// Without ca_seal a leader whose signer holds the new CA cannot go back: the cancel is
// refused with the reason, the command exits 1, and the rotation goes on.
func TestCancelWithoutASealedKeyIsRefused(t *testing.T) {
	t.Parallel()
	ag, obs, _ := embeddedGroup(t, "nocancel", 60*time.Second, "certificate: {validity: 1h}\n", false)
	for _, u := range []string{"web/0", "web/1"} {
		ag.start(u)
	}
	snap := awaitObs(t, obs, "2 units with certificates", time.Minute, func(s relation.Snapshot) bool {
		return available(s, "web/0") && available(s, "web/1")
	})
	frozen := "web/1"
	if snap.Leader == frozen {
		frozen = "web/0"
	}
	ag.signal(frozen, syscall.SIGSTOP)
	t.Cleanup(func() { ag.signal(frozen, syscall.SIGCONT) })
	if r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--wait=false"); r.code != 0 {
		t.Fatalf("ca rotate exited %d: %s", r.code, r.stderr)
	}
	awaitObs(t, obs, "the trust phase", time.Minute, func(s relation.Snapshot) bool {
		rot, ok := protocol.DecodeRotation(s.LeaderData[protocol.KeyCARotation])
		return ok && rot.Phase == protocol.PhaseTrust
	})
	r := runBinary(t, ag.bin, "ca", "rotate", "--cancel", "--config", ag.config, "--timeout", "1m")
	if r.code != 1 || !strings.Contains(r.stderr, "the leader did not cancel the CA rotation") || !strings.Contains(r.stderr, "no ca_seal key") {
		t.Fatalf("ca rotate --cancel without ca_seal exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	ag.signal(frozen, syscall.SIGCONT)
	awaitObs(t, obs, "the rotation to end on the new CA", 2*time.Minute, func(s relation.Snapshot) bool {
		return s.LeaderData[protocol.KeyCARotation] == "" && s.LeaderData[protocol.KeyCA] != snap.LeaderData[protocol.KeyCA] &&
			!strings.Contains(protocol.TrustsOf(s.LeaderData[protocol.KeyCA]), ",")
	})
	assertAlive(t, ag, "web/0", "web/1")
}

// signedBy: the certificate in leader data for unit is signed by the CA with fingerprint fp
// in the group's bundle.
func signedBy(t *testing.T, s relation.Snapshot, unit, fp string) bool {
	t.Helper()
	chain, err := certutil.ParseCertificates([]byte(s.LeaderData[protocol.SignedCertificateKey(unit)]))
	if err != nil {
		t.Fatalf("%s's certificate: %v", unit, err)
	}
	bundle, err := certutil.ParseCertificates([]byte(s.LeaderData[protocol.KeyCA]))
	if err != nil {
		t.Fatalf("the CA bundle: %v", err)
	}
	for _, ca := range bundle {
		if caseal.Fingerprint(ca.Raw) == fp {
			return chain[0].CheckSignatureFrom(ca) == nil
		}
	}
	return false
}

func removeUnit(units []string, unit string) []string {
	var out []string
	for _, u := range units {
		if u != unit {
			out = append(out, u)
		}
	}
	return out
}
