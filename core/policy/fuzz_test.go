package policy

import (
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// FuzzCheck feeds the policy arbitrary CSR bytes, units and profiles. It must never
// panic, and whatever it accepts must be what it promises: a CSR that parses, with
// exactly the unit's common name, no reserved name but the unit's own, no email SAN,
// within the limits.
func FuzzCheck(f *testing.F) {
	for _, h := range pkitest.HostileCSRs(f) {
		if len(h.CSRPEM) < 64<<10 {
			f.Add([]byte(h.CSRPEM), h.Unit, "peer")
		}
	}
	f.Add([]byte(pkitest.MakeCSR(f, pkitest.Request{Subject: pkix.Name{CommonName: "node/0"}, DNS: []string{"node-0", "a.web.internal"}})), "node/0", "server")
	f.Add([]byte(pkitest.MakeCSR(f, pkitest.Request{Subject: pkix.Name{CommonName: "tool"}, DNS: []string{"b.web.internal"}})), "", "client")
	rules := Defaults()
	rules.SANs = []string{"*.web.internal", "10.0.0.0/8"}
	rules.SharedSANs = []string{"localhost"}
	rules.URIs = []string{"spiffe://corp/{{.Unit}}"}
	pol := MustNew(rules)
	f.Fuzz(func(t *testing.T, csrPEM []byte, unit, profile string) {
		csr, err := pol.Check(Request{Unit: unit, CSRPEM: csrPEM, Profile: profile, Claimed: map[string]string{"x.web.internal": "node/9"}})
		if err != nil {
			if _, ok := err.(*Refusal); !ok {
				t.Fatalf("Check returned %T, not a *Refusal: %v", err, err)
			}
			return
		}
		if len(csrPEM) > rules.MaxCSRBytes || len(csr.EmailAddresses) > 0 || len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.URIs) > rules.MaxSANs {
			t.Fatalf("accepted a CSR beyond the limits")
		}
		if unit != "" && csr.Subject.CommonName != unit {
			t.Fatalf("accepted common name %q for unit %q", csr.Subject.CommonName, unit)
		}
		for _, d := range csr.DNSNames {
			n := Normalize(d)
			if ReservedUnitName(n) && n != UnitDNSName(unit) {
				t.Fatalf("accepted %q, another unit's name, for %q", d, unit)
			}
			if n == "x.web.internal" && unit != "node/9" {
				t.Fatalf("accepted a name node/9 holds for %q", unit)
			}
			if strings.ContainsAny(d, ",= \n") {
				t.Fatalf("accepted SAN %q", d)
			}
		}
	})
}
