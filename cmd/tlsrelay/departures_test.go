package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Units cut off from etcd (their agent and plugins stopped with SIGSTOP, so their real
// lease expires), as a partition would: one away past the revocation delay has the
// serial on its disk revoked (openssl verify -crl_check refuses it) and renews when it
// returns. An agent stopped with SIGTERM, or run with --once, leaves the note that it
// will be back; `tlsrelay revoke` revokes a stopped unit at once. What the leader does
// with each departure over time (a blip within the delay revokes nothing, a unit that
// will be back is not revoked past it) is core/agent's TestDeparturesWithinAndPastTheDelay,
// on a clock the test moves.
func TestDeparturesRevokeWhatUnitsHold(t *testing.T) {
	t.Parallel()
	const ttl, delay = 2 * time.Second, 4 * time.Second
	ag, obs, _ := embeddedGroup(t, "departures", ttl, fmt.Sprintf("ca: {revoke_departed_after: %s}\n", delay), true)
	for _, u := range []string{"web/0", "web/1", "web/2"} {
		ag.start(u)
	}
	snap := awaitObs(t, obs, "three units with certificates, their CSRs withdrawn", time.Minute, func(s relation.Snapshot) bool {
		for _, u := range []string{"web/0", "web/1", "web/2"} {
			if !available(s, u) || s.Units[u][protocol.KeyCSR] != "" {
				return false
			}
		}
		return true
	})
	onDisk := func(unit string) string {
		return mustReadCert(t, filepath.Join(ag.unitDir(unit), "tls.crt")).SerialNumber.Text(16)
	}
	held := onDisk("web/2")
	if published := snap.Units["web/2"][protocol.KeySerial]; published != held {
		t.Fatalf("web/2 reports serial %s, holds %s", published, held)
	}
	// A copy of what is on its disk now: the unit may renew as soon as it is back, before
	// the check below has read its file.
	heldPEM, err := os.ReadFile(filepath.Join(ag.unitDir("web/2"), "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	heldFile := filepath.Join(t.TempDir(), "held.crt")
	if err := os.WriteFile(heldFile, heldPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	// Away past the delay: the serial on its disk is revoked; it renews on return.
	cut(t, ag, obs, "web/2", ttl+delay+2*time.Second)
	snap = awaitObs(t, obs, "web/2's serial in the group's CRL", 30*time.Second, func(s relation.Snapshot) bool {
		return slices.Contains(crlSerials(t, s), held)
	})
	crlFile := filepath.Join(t.TempDir(), "ca.crl")
	if err := os.WriteFile(crlFile, []byte(snap.LeaderData[protocol.KeyCRL]), 0o644); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(ag.unitDir("web/0"), "ca.crt")
	out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", caFile, "-CRLfile", crlFile, heldFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate revoked") {
		t.Fatalf("openssl verify -crl_check of the revoked certificate on disk: %v\n%s", err, out)
	}
	snap = awaitObs(t, obs, "web/2 renewed after its revocation", time.Minute, func(s relation.Snapshot) bool {
		return available(s, "web/2") && s.Units["web/2"][protocol.KeySerial] != held
	})
	if renewed := onDisk("web/2"); renewed == held || renewed != snap.Units["web/2"][protocol.KeySerial] {
		t.Fatalf("web/2 holds %s after returning (revoked: %s, reported: %s)", renewed, held, snap.Units["web/2"][protocol.KeySerial])
	}

	// An agent stopped with SIGTERM says it will be back, and is not revoked.
	stopped := onDisk("web/1")
	ag.signalAgent("web/1", syscall.SIGTERM)
	awaitObs(t, obs, "web/1's note", 20*time.Second, func(s relation.Snapshot) bool { return s.Away["web/1"] == protocol.NoteBack })

	// So does `agent --once`, which leaves as soon as it holds a certificate.
	env := []string{"TLSRELAY_UNIT=job/0", "TLSRELAY_STATE_DIR=" + filepath.Join(ag.dir, "state-job-0"),
		"TLSRELAY_CERTIFICATE_OUTPUT_DIR=" + filepath.Join(ag.dir, "job-0"), "TMPDIR=" + ag.tmp}
	if r := runBinaryWith(t, ag.bin, env, "agent", "--config", ag.config, "--once", "--timeout", "1m"); r.code != 0 {
		t.Fatalf("agent --once: exit %d\n%s", r.code, r.stderr)
	}
	once := mustReadCert(t, filepath.Join(ag.dir, "job-0", "tls.crt")).SerialNumber.Text(16)
	time.Sleep(delay + time.Second) // past the delay once, with the real leases and clocks
	snap = awaitObs(t, obs, "job/0's note", 10*time.Second, func(s relation.Snapshot) bool { return s.Away["job/0"] == protocol.NoteBack })
	revoked := protocol.RevocationsOf(snap.LeaderData)
	if slices.Contains(serialsOf(revoked, "job/0"), once) || slices.Contains(crlSerials(t, snap), once) ||
		slices.Contains(serialsOf(revoked, "web/1"), stopped) || leafSerial(t, snap, "web/1") != stopped {
		t.Fatalf("past the delay, after agent --once (serial %s) and SIGTERM (web/1, serial %s): revocations %+v, web/1's certificate in leader data %q",
			once, stopped, revoked, leafSerial(t, snap, "web/1"))
	}

	// tlsrelay revoke decommissions it at once.
	r := runBinary(t, ag.bin, "revoke", "web/1", "--config", ag.config, "--timeout", "30s")
	if r.code != 0 || !strings.Contains(r.stdout, stopped) {
		t.Fatalf("tlsrelay revoke web/1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	awaitObs(t, obs, "web/1's serial in the CRL at once", 20*time.Second, func(s relation.Snapshot) bool {
		return slices.Contains(crlSerials(t, s), stopped)
	})
	if r := runBinary(t, ag.bin, "revoke", "web/0", "--config", ag.config); r.code == 0 || !strings.Contains(r.stderr, "web/0 is joined: stop its agent first") {
		t.Fatalf("tlsrelay revoke of a running unit: exit %d\n%s", r.code, r.stderr)
	}
}

// cut stops unit's agent and plugins (SIGSTOP) until its lease has expired and for d in
// all, then lets them go on.
func cut(t *testing.T, ag *agents, obs relation.Observer, unit string, d time.Duration) {
	t.Helper()
	start := time.Now()
	ag.signal(unit, syscall.SIGSTOP)
	defer ag.signal(unit, syscall.SIGCONT)
	awaitObs(t, obs, unit+"'s lease to expire", 20*time.Second, func(s relation.Snapshot) bool {
		_, joined := s.Units[unit]
		return !joined
	})
	time.Sleep(time.Until(start.Add(d)))
}

func leafSerial(t *testing.T, s relation.Snapshot, unit string) string {
	t.Helper()
	chain := s.LeaderData[protocol.SignedCertificateKey(unit)]
	if chain == "" {
		return ""
	}
	return mustParseChain(t, chain).SerialNumber.Text(16)
}

func serialsOf(revs []protocol.Revocation, unit string) []string {
	var out []string
	for _, r := range revs {
		if r.Unit == unit {
			out = append(out, r.Serial)
		}
	}
	return out
}

func mustParseChain(t *testing.T, chain string) *x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertificates([]byte(chain))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// crlSerials lists the serials the group's CRL in leader data revokes.
func crlSerials(t *testing.T, s relation.Snapshot) []string {
	return pemCRLSerials(t, s.LeaderData[protocol.KeyCRL])
}

// pemCRLSerials lists the serials a CRL revokes; none for no CRL.
func pemCRLSerials(t *testing.T, crlPEM string) []string {
	t.Helper()
	if crlPEM == "" {
		return nil
	}
	crl, err := certutil.ParseCRL([]byte(crlPEM))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, serial := range certutil.Revoked(crl) {
		out = append(out, serial.Text(16))
	}
	return out
}

// With a signer that signs no CRL (easy-rsa), `tlsrelay revoke` records the revocation
// and says what it means: the certificates stay valid, and keep their names, until they
// expire. (The leader keeps the unit's leader data, its names held, until then; it used
// to forget it as if revoked.)
func TestRevokeWithoutACRL(t *testing.T) {
	t.Parallel()
	ag, obs, _ := embeddedGroup(t, "nocrl", 10*time.Second, "roles: {csr: easyrsa, signer: easyrsa}\ncertificate: {validity: 1h}\n", false)
	for _, u := range []string{"web/0", "web/1"} {
		ag.start(u)
	}
	snap := awaitObs(t, obs, "2 units with certificates", time.Minute, func(s relation.Snapshot) bool {
		return available(s, "web/0") && available(s, "web/1")
	})
	gone := "web/1"
	if snap.Leader == gone {
		gone = "web/0"
	}
	held := leafSerial(t, snap, gone)
	ag.signalAgent(gone, syscall.SIGTERM)
	awaitObs(t, obs, gone+"'s note", 20*time.Second, func(s relation.Snapshot) bool { return s.Away[gone] == protocol.NoteBack })
	r := runBinary(t, ag.bin, "revoke", gone, "--config", ag.config, "--timeout", "30s")
	if r.code != 0 || !strings.Contains(r.stdout, "recorded 1 certificate(s) as revoked: "+held) || !strings.Contains(r.stdout, "signs no CRL") {
		t.Fatalf("tlsrelay revoke %s: exit %d, want 0 saying it is recorded, not revoked by a CRL\n%s%s", gone, r.code, r.stdout, r.stderr)
	}
	if snap := awaitObs(t, obs, "the leader data", 5*time.Second, func(relation.Snapshot) bool { return true }); leafSerial(t, snap, gone) != held {
		t.Fatalf("the leader forgot %s, whose certificate is still valid (no CRL), and with it its names", gone)
	}
}
