package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// barbicanGroup starts an embedded etcd, a real Barbican holding ca (its certificate and
// key, with the intermediates inter) in a certificate container, and agents of relation
// name whose ca.ref is that container, with caMore in the ca: map and more YAML; it
// returns the agents, an observer of the relation, Barbican and the container's
// reference. All stop when the test ends.
func barbicanGroup(t *testing.T, name string, ca pkitest.CA, inter []byte, caMore, more string) (*agents, relation.Observer, *testservers.Barbican, string) {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	barbican := testservers.StartBarbican(t)
	ref := barbican.As(t, "demo").CertificateContainer("group-ca", []byte(ca.PEM), pkitest.KeyPEM(t, ca.Key), inter)
	ag := newAgentsWith(t, fmt.Sprintf(`relation:
  name: %s
  store: etcd
  etcd: {endpoints: [%q], lease_ttl: 2s}
roles: {secrets: barbican}
plugins:
  barbican:
    config:
      auth: {type: noauth, endpoint: %q, project_id: demo}
      retry_deadline: 2s
      timeout: 2s
ca: {ref: %q%s}
`, name, srv.Endpoint(), barbican.URL, ref, caMore)+more, false)
	return ag, observe(t, etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: name}), barbican, ref
}

// The group's CA held in a real Barbican (ca.ref), no ca_seal: each leader, the first
// one too, fetches it through the barbican plugin and imports it into its own signer.
// The leader is killed with -9 while a CSR is pending, twice: once with Barbican up
// (the next leader signs with the same CA), once with Barbican stopped (the next
// leader does not sign, and says why in status, until Barbican is back).
func TestLeaderFailoverWithTheCAInBarbican(t *testing.T) {
	t.Parallel()
	groupCA := pkitest.NewCA(t, "group CA in Barbican", time.Now())
	ag, obs, barbican, ref := barbicanGroup(t, "caref", groupCA, nil, "", "")
	want := caseal.Fingerprint(groupCA.Cert.Raw)

	next := 0
	add := func() string {
		unit := fmt.Sprintf("node/%d", next)
		next++
		ag.start(unit)
		return unit
	}
	for range 3 {
		add()
	}
	allAvailable := func(s relation.Snapshot) bool {
		for _, u := range ag.running() {
			if !available(s, u) {
				return false
			}
		}
		return true
	}
	snap := awaitObs(t, obs, "3 units with certificates", time.Minute, allAvailable)
	checkCAFromRef := func(round int, s relation.Snapshot) {
		t.Helper()
		if got := caFingerprint(t, s.LeaderData[protocol.KeyCA]); got != want {
			t.Fatalf("round %d: the group's CA is %.16s, not Barbican's %.16s", round, got, want)
		}
		if s.LeaderData[protocol.KeyCASealed] != "" {
			t.Fatalf("round %d: a sealed CA key in leader data without ca_seal", round)
		}
		if b, _ := os.ReadFile(filepath.Join(ag.dir, protocol.UnitDNSName(s.Leader)+".log")); !strings.Contains(string(b), "imported the group's CA from ca.ref") {
			t.Errorf("round %d: the leader %s did not import the CA from ca.ref:\n%s", round, s.Leader, b)
		}
		proveGroup(t, ag, want, round)
	}
	checkCAFromRef(0, snap)

	for round, barbicanUp := range []bool{true, false} {
		leader := snap.Leader
		ag.signal(leader, syscall.SIGSTOP)
		pending := add()
		awaitObs(t, obs, pending+"'s CSR", 30*time.Second, func(s relation.Snapshot) bool { return s.Units[pending][protocol.KeyCSR] != "" })
		if !barbicanUp {
			barbican.Stop(t)
		}
		ag.signal(leader, syscall.SIGKILL)
		if !barbicanUp {
			// The new leader cannot reach the CA: it signs nothing and says why.
			snap = awaitObs(t, obs, "the new leader's reason in its status", 30*time.Second, func(s relation.Snapshot) bool {
				return s.Leader != "" && s.Leader != leader && strings.Contains(s.Units[s.Leader][protocol.KeyError], "ca.ref "+ref)
			})
			t.Logf("round %d, Barbican down: %s reports %q", round+1, snap.Leader, snap.Units[snap.Leader][protocol.KeyError])
			if available(snap, pending) {
				t.Fatalf("round %d: %s was signed while the group's CA was unreachable", round+1, pending)
			}
			barbican.Start(t)
		}
		snap = awaitObs(t, obs, pending+"'s certificate from the new leader", time.Minute, func(s relation.Snapshot) bool {
			return s.Leader != leader && allAvailable(s)
		})
		checkCAFromRef(round+1, snap)
	}
}
