package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A group's leader records every certificate it signs: after `up`, each unit's
// certificate has exactly one `signed` record, and the record matches it (unit, serial,
// names, validity, the issuing CA); the trail holds no key, is mode 0600, and `tlsrelay
// audit` filters it by unit and time and prints a table.
func TestAuditTrailOfAGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	trail := filepath.Join(dir, "audit", "trail.jsonl")
	config := fileWriter(t, dir)("tlsrelay.yaml", fmt.Sprintf("audit: {path: %s}\n", trail))
	group := filepath.Join(dir, "group")
	if r := run(t, "up", "--config", config, "--dir", group, "--units", "5"); r.code != 0 {
		t.Fatalf("up: exit %d\n%s", r.code, r.stderr)
	}
	units := map[string]string{}
	for i := range 5 {
		u := fmt.Sprintf("node/%d", i)
		units[u] = filepath.Join(group, protocol.UnitDNSName(u))
	}
	events := checkAuditTrail(t, config, units)
	if !slices.ContainsFunc(events, func(e audit.Event) bool { return e.Event == audit.EventLeaderGained }) ||
		!slices.ContainsFunc(events, func(e audit.Event) bool { return e.Event == audit.EventCAPublished && e.CASHA256 != "" }) {
		t.Errorf("the trail lacks the leadership or the CA's publication:\n%v", events)
	}
	if info, err := os.Stat(trail); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the trail: %v, mode %o; want 0600", err, info.Mode().Perm())
	}
	if b := mustRead(t, trail); strings.Contains(string(b), "PRIVATE KEY") {
		t.Fatal("a key in the audit trail")
	}

	// --unit shows the events that concern a unit or that it recorded: a unit that does
	// not lead has only its own.
	var leader string
	for _, e := range events {
		if e.Event == audit.EventLeaderGained {
			leader = e.Leader
		}
	}
	follower := "node/3"
	if leader == follower {
		follower = "node/2"
	}
	r := run(t, "audit", "--config", config, "--unit", follower)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) < 2 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("audit --unit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, line := range lines[1:] {
		if f := strings.Fields(line); f[1] == audit.EventSigned && f[2] != follower {
			t.Errorf("audit --unit %s shows another unit's record: %s", follower, line)
		}
	}
	if r := run(t, "audit", "--config", config, "--since", "2099-01-01T00:00:00Z", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("audit --since the future: exit %d, %q", r.code, r.stdout)
	}
	if r := run(t, "audit", "--config", config, "--since", "yesterday"); r.code == 0 || !strings.Contains(r.stderr, `--since "yesterday"`) {
		t.Errorf("a bad --since: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, "audit"); r.code == 0 || !strings.Contains(r.stderr, "audit.path is not set") {
		t.Errorf("audit without a trail: exit %d, %s", r.code, r.stderr)
	}
}

// checkAuditTrail reads the trail through `tlsrelay audit --json` and checks that each
// unit's installed certificate (units: name to output directory) has exactly one
// matching `signed` record.
func checkAuditTrail(t *testing.T, config string, units map[string]string) []audit.Event {
	t.Helper()
	r := run(t, "audit", "--config", config, "--json")
	if r.code != 0 {
		t.Fatalf("audit --json: exit %d\n%s", r.code, r.stderr)
	}
	var events []audit.Event
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit --json line %q: %v", line, err)
		}
		events = append(events, e)
	}
	for unit, dir := range units {
		cert := mustReadCert(t, filepath.Join(dir, "tls.crt"))
		cas, err := certutil.ParseCertificates(mustRead(t, filepath.Join(dir, "ca.crt")))
		if err != nil {
			t.Fatal(err)
		}
		serial := cert.SerialNumber.Text(16)
		var found []audit.Event
		for _, e := range events {
			if e.Event == audit.EventSigned && e.Serial == serial {
				found = append(found, e)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %d signed records of its certificate %s, want exactly 1", unit, len(found), serial)
			continue
		}
		e := found[0]
		var issuer string
		for _, ca := range cas {
			if ca.Subject.String() == cert.Issuer.String() {
				issuer = caseal.Fingerprint(ca.Raw)
			}
		}
		switch {
		case e.Unit != unit || e.Leader == "" || e.Relation == "":
			t.Errorf("%s: the record names unit %q, leader %q, relation %q", unit, e.Unit, e.Leader, e.Relation)
		case !slices.Equal(e.Names, cert.DNSNames):
			t.Errorf("%s: the record names %v, the certificate %v", unit, e.Names, cert.DNSNames)
		case len(e.CSRSHA256) != 64 || e.Profile == "" || e.Signer == "" || e.Validity == "":
			t.Errorf("%s: the record lacks the CSR digest, profile, signer or validity: %+v", unit, e)
		case !e.NotAfter.Equal(cert.NotAfter):
			t.Errorf("%s: the record says not after %s, the certificate %s", unit, e.NotAfter, cert.NotAfter)
		case e.CASHA256 != issuer:
			t.Errorf("%s: the record names CA %.16s, the certificate's issuer is %.16s", unit, e.CASHA256, issuer)
		}
	}
	return events
}
