package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
)

// One name, one holder, under `up` with real agents and plugins: two amphorae that ask
// for the same name at once (AMPHORA_ID is one variable for every agent up starts, as
// the shipped Octavia example once read it) are decided before anything is signed. One
// (whichever the leader sees first) is signed; the other is refused with a reason naming
// the holder, and up stops at once saying so. Before, the leader signed both in one
// batch, then "rejected" them.
func TestUpGivesOneNameToOneUnit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const id = "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"
	config := fileWriter(t, dir)("race.yaml", `relation: {name: race}
kinds:
  controller: {count: 1, leader_eligible: true, profile: client}
  amphora:
    count: 2
    leader_eligible: false
    profile: server
    sans: ['{{env "AMPHORA_ID"}}']
policy:
  units:
    - match: "amphora/*"
      sans: ["[0-9a-f]*-[0-9a-f]*-[0-9a-f]*-[0-9a-f]*-[0-9a-f]*"]
`)
	group := filepath.Join(dir, "group")
	r := runWith(t, []string{"AMPHORA_ID=" + id}, "up", "--config", config, "--dir", group)
	// Whichever CSR the leader sees first is signed; within one snapshot, the first in
	// unit order.
	var holders []string
	for _, unit := range []string{"amphora/0", "amphora/1"} {
		crt := filepath.Join(group, strings.ReplaceAll(unit, "/", "-"), "tls.crt")
		if _, err := os.Stat(crt); err == nil && slices.Contains(mustReadCert(t, crt).DNSNames, id) {
			holders = append(holders, unit)
		}
	}
	if len(holders) != 1 {
		t.Fatalf("units holding %s: %v, want one\n%s", id, holders, r.stderr)
	}
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("it asks for %q, which unit %s holds", id, holders[0])) {
		t.Fatalf("up: exit %d, want 1 and the refusal naming the holder %s\n%s%s", r.code, holders[0], r.stdout, r.stderr)
	}
}

// A signer that signs as Octavia's LocalCertGenerator does (the CSR's SANs dropped,
// server and client usages whatever the profile) is a real plugin process here: the
// leader publishes none of its certificates, refuses each CSR with the signer's
// mismatch as its reason, and up fails saying so, where it used to print OK.
func TestUpFailsOnASignerThatSignsOtherThanAsked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := testbin.Build(t, testbin.Custodian)
	config := fileWriter(t, dir)("sloppy.yaml", fmt.Sprintf(`certificate: {profile: server}
roles: {csr: cfssl, signer: keeper}
plugins:
  keeper:
    command: %s
    sha256: %s
    env: [CUSTODIAN_CUSTODY]
    config: {ca_dir: %q, custody: local, spoil: local-cert-generator}
`, bin, testbin.SHA256(t, bin), filepath.Join(dir, "ca")))
	group := filepath.Join(dir, "group")
	r := runWith(t, []string{"CUSTODIAN_CUSTODY=local"}, "up", "--config", config, "--units", "2", "--dir", group)
	if r.code != 1 || !strings.Contains(r.stderr, "the signer's certificate does not match the request") ||
		!strings.Contains(r.stderr, "DNS names") || !strings.Contains(r.stderr, "extended key usages") {
		t.Fatalf("up: exit %d, want 1 naming the signer's mismatch\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, unit := range []string{"node-0", "node-1"} {
		if _, err := os.Stat(filepath.Join(group, unit, "tls.crt")); err == nil {
			t.Errorf("%s installed a certificate the signer spoiled", unit)
		}
	}
}
