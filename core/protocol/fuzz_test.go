package protocol

import (
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// FuzzDecide runs the leader's decision over hostile relation contents: any bytes as a
// unit's CSR, profile, certificate and rejection, and as the published and sealed CA.
// Decide must never panic, and the leader must sign only what the policy accepts.
func FuzzDecide(f *testing.F) {
	ca := pkitest.NewCA(f, "fuzz CA", now)
	key := pkitest.NewKey(f)
	good := pkitest.CSR(f, key, "db/1", "db-1")
	_, leaf := ca.Issue(f, key.Public(), pkitest.Leaf{CN: "db/1", DNS: []string{"db-1"}, NotBefore: now.Add(-1e12)})
	f.Add(good, "peer", leaf, "", ca.PEM, "")
	f.Add(good, "admin", "", `{"csr_digest":"x","reason":"y"}`, ca.PEM, "not sealed")
	f.Add(pkitest.CSR(f, key, "db/1", "DB-0."), "peer", "garbage", "{", "", "")
	for _, h := range pkitest.HostileCSRs(f) {
		if len(h.CSRPEM) < 64<<10 {
			f.Add(h.CSRPEM, "peer", "", "", ca.PEM, "")
		}
	}
	pol := policy.MustNew(policy.Defaults())
	f.Fuzz(func(t *testing.T, csr, profile, cert, rejection, published, sealed string) {
		v := View{
			Unit: "db/0", Leader: true, Now: now, Memory: LeaderMemory{SignerCA: ca.PEM, Signer: exportable}, CASeal: true, Policy: pol,
			Units: map[string]map[string]string{
				"db/0": {},
				"db/1": {KeyCSR: csr, KeyProfile: profile},
			},
			LeaderData: map[string]string{
				KeyCA: published, KeyCASealed: sealed,
				SignedCertificateKey("db/1"): cert, RejectionKey("db/1"): rejection,
				SignedCertificateKey("db/7"): cert, // a departed unit's
			},
			Want: Want{CommonName: "db/0", SANs: []string{"db-0"}, Profile: "peer", RenewAt: 0.66, Validity: 24 * time.Hour},
		}
		for _, act := range Decide(v).Actions {
			if s, ok := act.(SignCSR); ok {
				if _, err := pol.Check(policy.Request{Unit: s.Unit, CSRPEM: []byte(s.CSRPEM), Profile: s.Profile}); err != nil {
					t.Fatalf("the leader signs a CSR of %s the policy refuses: %v", s.Unit, err)
				}
			}
		}
	})
}
