package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// Under up, every unit's on_change runs once its whole set of files is in place (ca.crl
// too: haproxy and nginx refuse a crl-file that is missing), never on a CRL alone before
// its certificate (it did on the units that do not lead: a run saw
// only ca.crl and the pending key), and says what changed.
func TestOnChangeSeesTheWholeSetUnderUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	config := fileWriter(t, dir)("tlsrelay.yaml", `certificate:
  output: {formats: [bundle]}
  on_change: 'cd "$TLSRELAY_OUTPUT_DIR" && echo "$TLSRELAY_UNIT changed=[$TLSRELAY_CHANGED] present=[$(ls | tr "\n" " ")]" >> `+runs+`'
`)
	if r := run(t, "up", "--config", config, "--dir", filepath.Join(dir, "up"), "--units", "4"); r.code != 0 {
		t.Fatalf("up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		unit, rest, _ := strings.Cut(line, " ")
		present := rest[strings.Index(rest, "present="):]
		for _, want := range []string{"tls.key", "tls.crt", "ca.crt", "ca.crl", "bundle.pem"} {
			if !strings.Contains(present, want) {
				t.Errorf("%s's on_change ran before %s was in place: %s", unit, want, line)
			}
		}
		if !seen[unit] && !strings.Contains(rest, "tls.crt") {
			t.Errorf("%s's first on_change does not name tls.crt as changed: %s", unit, line)
		}
		seen[unit] = true
	}
	if len(seen) != 4 {
		t.Errorf("on_change ran for %d units, want 4:\n%s", len(seen), b)
	}
}

// `agent --once` with secrets ends when the unit holds its certificate and every secret
// is written (it ended before any was, "context canceled"), and exits 1 naming a secret
// it could not write.
func TestAgentOnceWaitsForItsSecrets(t *testing.T) {
	t.Parallel()
	server := testservers.StartBarbican(t)
	m := testservers.NewMaterial(t)
	good := server.As(t, "demo").CertificateContainer("once", m.Cert, m.Key, m.Inter)
	missing := server.URL + "/v1/containers/0b0e6cd8-0000-4000-8000-000000000000"
	dir := t.TempDir()
	config := func(refs ...string) string {
		var secrets strings.Builder
		for i, ref := range refs {
			fmt.Fprintf(&secrets, "  - {name: l%d, ref: %q, output: {dir: %q}}\n", i, ref, filepath.Join(dir, fmt.Sprint("l", i)))
		}
		return fileWriter(t, dir)(fmt.Sprintf("once-%d.yaml", len(refs)), fmt.Sprintf(`unit: lb/0
state_dir: %s/state-%d
relation: {store: memory}
certificate: {output: {dir: %s/out-%d}}
roles: {secrets: barbican}
plugins:
  barbican:
    config:
      auth: {type: noauth, endpoint: %q, project_id: demo}
      retry_deadline: 2s
      timeout: 2s
secrets:
%s`, dir, len(refs), dir, len(refs), server.URL, secrets.String()))
	}
	r := run(t, "agent", "--once", "--config", config(good))
	if r.code != 0 {
		t.Fatalf("agent --once with a secret: exit %d\n%s", r.code, r.stderr)
	}
	if key, err := os.ReadFile(filepath.Join(dir, "l0", "tls.key")); err != nil || !bytes.Equal(key, m.Key) {
		t.Fatalf("agent --once exited 0 without the secret's key written: %v", err)
	}
	r = run(t, "agent", "--once", "--config", config(good, missing))
	if r.code != 1 || !strings.Contains(r.stderr, "secret l1") || !strings.Contains(r.stderr, missing) {
		t.Fatalf("agent --once with a missing secret: exit %d, want 1 naming secret l1 and its ref\n%s", r.code, r.stderr)
	}
}

// A signer that signs no CRL (easy-rsa's plugin) leaves departed units unrevoked; that
// was an INFO line hidden at the default level. The leader now warns, status says
// REVOCATION OFF, and tlsrelay_revocation_unsupported is 1.
func TestSignerWithoutCRLSaysSo(t *testing.T) {
	t.Parallel()
	ag, obs, _ := embeddedGroup(t, "nocrl", 6*time.Second, "roles: {csr: cfssl, signer: easyrsa}\n", false)
	for _, u := range []string{"web/0", "web/1"} {
		ag.startArgs(u, []string{"--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"})
	}
	snap := awaitObs(t, obs, "2 units signed", 2*time.Minute, func(s relation.Snapshot) bool {
		return allAvailable("web/0", "web/1")(s) && s.Units[s.Leader][protocol.KeyNoCRL] == "true"
	})
	if st := runBinary(t, ag.bin, "status", "--config", ag.config); !strings.Contains(st.stdout, "REVOCATION OFF: the signer easyrsa signs no CRL") {
		t.Errorf("status does not say revocation is off:\n%s", st.stdout)
	}
	if !strings.Contains(ag.logOf(snap.Leader), `"@level":"warn","@message":"the signer signs no CRL`) {
		t.Errorf("the leader did not warn:\n%s", ag.logOf(snap.Leader))
	}
	gauge := find(scrape(t, metricsURL(t, ag, snap.Leader)), "tlsrelay_revocation_unsupported", map[string]string{"unit": snap.Leader})
	if gauge == nil || gauge.GetGauge().GetValue() != 1 {
		t.Errorf("tlsrelay_revocation_unsupported = %v, want 1", gauge)
	}
}
