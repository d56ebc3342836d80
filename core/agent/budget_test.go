package agent

import (
	"context"
	"crypto/x509/pkix"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/syncbuf"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A unit that churns keys (a new CSR as soon as each is answered) is signed up to
// policy.max_certificates unexpired certificates, then refused (rule budget) until one
// expires (then the CSR refused last is signed as it is): what the leader records of it
// stays bounded, and its refusals are on the audit trail once a window
// (protocol.RejectionRetry), not once a CSR, so they cannot rotate its signings away.
func TestAUnitThatChurnsKeysIsHeldToItsBudget(t *testing.T) {
	const most = 3
	rules := policy.Defaults()
	rules.SharedSANs, rules.MaxCertificates = []string{"localhost"}, most
	root := t.TempDir()
	g := newAuditedGroup(t, root)
	store, trail, trailPath, leader := g.store, g.trail, g.trailPath, g.join("db/0", true)
	logs := &syncbuf.Buffer{}
	clock := &testClock{now: time.Now()}
	runAgent(t, Options{Member: leader, Backends: inProcess{newCfssl(t, filepath.Join(root, "ca"))}, Certificate: testCert,
		Policy: policy.MustNew(rules), Dir: filepath.Join(root, "db-0"), Audit: trail, Now: clock.Now,
		Log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Warn})})
	churner := g.join("db/9", false)
	obs, err := store.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	signed, refused, csr := 0, 0, ""
	for range 3 * most {
		csr = pkitest.MakeCSR(t, pkitest.Request{Subject: pkix.Name{CommonName: "db/9"}, DNS: []string{"db-9"}})
		if err := churner.SetUnitData(context.Background(), map[string]string{protocol.KeyCSR: csr, protocol.KeyProfile: "peer"}); err != nil {
			t.Fatal(err)
		}
		answer := awaitSnapshot(t, obs, "the leader's answer to db/9's CSR", func(s relation.Snapshot) bool {
			r, ok := protocol.DecodeRejection(s.LeaderData[protocol.RejectionKey("db/9")])
			return answeredWith(s, "db/9", csr) || ok && r.CSRDigest == protocol.Digest(csr)
		})
		if answeredWith(answer, "db/9", csr) {
			signed++
			continue
		}
		refused++
		if r, _ := protocol.DecodeRejection(answer.LeaderData[protocol.RejectionKey("db/9")]); r.Rule != string(policy.RuleBudget) ||
			!strings.Contains(r.Reason, "policy.max_certificates") {
			t.Fatalf("db/9's CSR refused with %+v; want the rule budget, naming policy.max_certificates", r)
		}
	}
	if signed != most || refused != 2*most {
		t.Errorf("of %d CSRs, %d signed and %d refused; want %d signed, the rest refused", 3*most, signed, refused, most)
	}
	// A window later (still within its certificates' hour) a refusal is recorded again:
	// one record a window, not one for the whole flood.
	clock.Advance(protocol.RejectionRetry + time.Minute)
	csr = pkitest.MakeCSR(t, pkitest.Request{Subject: pkix.Name{CommonName: "db/9"}, DNS: []string{"db-9"}})
	if err := churner.SetUnitData(context.Background(), map[string]string{protocol.KeyCSR: csr}); err != nil {
		t.Fatal(err)
	}
	awaitSnapshot(t, obs, "db/9's CSR refused a window later", func(s relation.Snapshot) bool {
		r, ok := protocol.DecodeRejection(s.LeaderData[protocol.RejectionKey("db/9")])
		return ok && r.CSRDigest == protocol.Digest(csr)
	})

	// Once its certificates have expired (the hour of testCert), the CSR refused last
	// is judged again and signed, without a new one.
	clock.Advance(2 * time.Hour)
	if err := churner.SetUnitData(context.Background(), map[string]string{protocol.KeyState: "waiting"}); err != nil {
		t.Fatal(err) // a change for the leader to decide on, at the new time
	}
	awaitSnapshot(t, obs, "db/9's last CSR signed once its certificates expired", func(s relation.Snapshot) bool {
		return answeredWith(s, "db/9", csr)
	})
	events, _, err := audit.Read(trailPath, audit.Filter{Unit: "db/9"})
	if err != nil {
		t.Fatal(err)
	}
	rejected := 0
	for _, e := range events {
		if e.Event == audit.EventRejected {
			rejected++
		}
	}
	if rejected != 2 {
		t.Errorf("the trail holds %d refusals of db/9 for %d refused CSRs in one window and 1 in the next, want 2", rejected, refused)
	}
}

// answeredWith: leader data holds a certificate for unit's CSR csr (for its key).
func answeredWith(s relation.Snapshot, unit, csrPEM string) bool {
	chain, err := certutil.ParseCertificates([]byte(s.LeaderData[protocol.SignedCertificateKey(unit)]))
	if err != nil || len(chain) == 0 {
		return false
	}
	csr, err := certutil.ParseCSR([]byte(csrPEM), unit)
	return err == nil && certutil.SamePublicKey(chain[0].PublicKey, csr.PublicKey)
}
