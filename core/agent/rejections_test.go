package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// A CSR refused under the leader's policy is judged again as soon as a leader with
// other rules leads (the operator mended the policy and restarted it): the unit is
// signed then, not after protocol.RejectionRetry, with the same CSR.
func TestARefusalUnderOtherRulesIsJudgedAgain(t *testing.T) {
	mended := policy.Defaults()
	mended.SharedSANs = []string{"localhost"}
	mended.SANs = []string{"extra.example"}
	c := newCluster(t)
	rules := testPolicy
	c.opts = func(o *Options) {
		o.Policy = rules
		if o.Member.Unit() == "db/1" {
			o.Certificate.SANs = append(o.Certificate.SANs, "extra.example")
		}
	}
	c.start("db/0")
	c.waitCerts("db/0")
	c.startWith("db/1", false)
	obs, err := c.store.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	refused := awaitSnapshot(t, obs, "db/1's CSR refused", func(s relation.Snapshot) bool {
		_, ok := protocol.DecodeRejection(s.LeaderData[protocol.RejectionKey("db/1")])
		return ok
	})
	r, _ := protocol.DecodeRejection(refused.LeaderData[protocol.RejectionKey("db/1")])
	if r.Policy != testPolicy.Fingerprint() || !strings.Contains(r.Reason, "extra.example") {
		t.Fatalf("the refusal on record: %+v; want it to name extra.example and the rules' fingerprint %s", r, testPolicy.Fingerprint())
	}
	csr := refused.Units["db/1"][protocol.KeyCSR]

	rules = policy.MustNew(mended)
	c.stop("db/0")
	c.start("db/0")
	signed := awaitSnapshot(t, obs, "db/1 signed under the mended rules", func(s relation.Snapshot) bool {
		return s.LeaderData[protocol.SignedCertificateKey("db/1")] != ""
	})
	if got := signed.Units["db/1"][protocol.KeyCSR]; got != "" && got != csr {
		t.Error("db/1 sent another CSR; the one refused should have been judged again")
	}
	if cert := c.waitCerts("db/1")["db/1"]; !strings.Contains(strings.Join(cert.DNSNames, " "), "extra.example") {
		t.Errorf("db/1's certificate names %v, want extra.example among them", cert.DNSNames)
	}
}
