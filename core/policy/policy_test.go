package policy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func TestHostileCSRsAreRefused(t *testing.T) {
	pol := MustNew(Defaults())
	for _, h := range pkitest.HostileCSRs(t) {
		t.Run(h.Name, func(t *testing.T) {
			_, err := pol.Check(Request{Unit: h.Unit, CSRPEM: []byte(h.CSRPEM), Profile: "peer"})
			refusal, ok := err.(*Refusal)
			if !ok {
				t.Fatalf("Check = %v, want a *Refusal", err)
			}
			if !strings.Contains(refusal.Reason, h.Reason) || !strings.Contains(refusal.Error(), h.Unit) {
				t.Fatalf("refusal %q, want one naming %s and containing %q", refusal.Error(), h.Unit, h.Reason)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	rules := Defaults()
	rules.SANs = []string{"{{.DNSName}}.db.internal", "*.web.internal", "10.1.0.0/16"}
	rules.SharedSANs = []string{"localhost", "127.0.0.1", "db.internal"}
	rules.URIs = []string{"spiffe://corp/{{.Unit}}", "spiffe://corp/jobs/*"}
	pol := MustNew(rules)
	cn := func(s string) pkix.Name { return pkix.Name{CommonName: s} }
	claimed := map[string]string{"a.web.internal": "node/1", "10.1.0.9": "node/1", "localhost": "node/1"}
	tests := []struct {
		name   string
		unit   string
		req    pkitest.Request
		refuse string // "" when signed
		rule   Rule
	}{
		{"own name", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"node-0"}}, "", ""},
		{"own name in upper case with a trailing dot", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"NODE-0."}}, "", ""},
		{"a per-unit template", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"node-0.db.internal"}}, "", ""},
		{"another unit's templated name", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"node-1.db.internal"}}, "not allowed", RuleNotAllowed},
		{"a label glob", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"b.web.internal"}}, "", ""},
		{"a glob does not span labels", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"x.b.web.internal"}}, "not allowed", RuleNotAllowed},
		{"a wildcard SAN needs a pattern that is exactly it", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"*.web.internal"}}, "", ""},
		{"a wildcard SAN no pattern names", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"*.db.internal"}}, "not allowed", RuleNotAllowed},
		{"a name another unit holds", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"A.web.internal"}}, "which unit node/1 holds", RuleHeld},
		{"the holder itself, renewing", "node/1", pkitest.Request{Subject: cn("node/1"), DNS: []string{"a.web.internal"}}, "", ""},
		{"an IP another unit holds", "node/0", pkitest.Request{Subject: cn("node/0"), IPs: []net.IP{net.ParseIP("10.1.0.9")}}, "which unit node/1 holds", RuleHeld},
		{"an IP in the range", "node/0", pkitest.Request{Subject: cn("node/0"), IPs: []net.IP{net.ParseIP("10.1.2.3")}}, "", ""},
		{"an IP outside it", "node/0", pkitest.Request{Subject: cn("node/0"), IPs: []net.IP{net.ParseIP("10.2.0.1")}}, "not allowed", RuleNotAllowed},
		{"shared names are shared", "node/0", pkitest.Request{Subject: cn("node/0"), DNS: []string{"localhost", "db.internal"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}, "", ""},
		{"the unit's SPIFFE ID", "node/0", pkitest.Request{Subject: cn("node/0"), URIs: []string{"spiffe://corp/node/0"}}, "", ""},
		{"another unit's SPIFFE ID", "node/0", pkitest.Request{Subject: cn("node/0"), URIs: []string{"spiffe://corp/node/1"}}, "URI SAN", RuleNotAllowed},
		{"a URI glob within one segment", "node/0", pkitest.Request{Subject: cn("node/0"), URIs: []string{"spiffe://corp/jobs/x"}}, "", ""},
		{"a URI glob does not span segments", "node/0", pkitest.Request{Subject: cn("node/0"), URIs: []string{"spiffe://corp/jobs/x/y"}}, "URI SAN", RuleNotAllowed},
		{"outside a group: any allowed name", "", pkitest.Request{Subject: cn("backup tool"), DNS: []string{"b.web.internal"}}, "", ""},
		{"outside a group: no unit's name", "", pkitest.Request{Subject: cn("backup tool"), DNS: []string{"node-3"}}, "the name of unit node/3", RuleReserved},
		{"outside a group: no unit's common name", "", pkitest.Request{Subject: cn("node/3")}, "sign it with --unit", RuleReserved},
		{"outside a group: a common name that reads as two attributes", "", pkitest.Request{Subject: cn("a\nb=c/CN=admin"), DNS: []string{"b.web.internal"}}, "has the character '\\n'", RuleSubject},
		{"outside a group: a common name with a comma", "", pkitest.Request{Subject: cn("tool,O=corp"), DNS: []string{"b.web.internal"}}, "has the character ','", RuleSubject},
		{"an email SAN is not allowed", "node/0", pkitest.Request{Subject: cn("node/0"), Emails: []string{"root@example.org"}}, "email SANs", RuleNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := pol.Check(Request{Unit: tt.unit, CSRPEM: []byte(pkitest.MakeCSR(t, tt.req)), Profile: "server", Claimed: claimed})
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse == "" && csr == nil:
				t.Fatal("no CSR returned")
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse)):
				t.Fatalf("Check = %v, want a refusal containing %q", err, tt.refuse)
			case tt.refuse != "" && err.(*Refusal).Rule != tt.rule:
				t.Fatalf("refused by rule %q, want %q", err.(*Refusal).Rule, tt.rule)
			}
		})
	}
}

func TestRulesAreValidated(t *testing.T) {
	tests := []struct {
		edit func(*Rules)
		want string
	}{
		{func(r *Rules) { r.SANs = []string{"{{.Nope}}"} }, "policy.sans[0]"},
		{func(r *Rules) { r.SharedSANs = []string{"node-3"} }, "policy.shared_sans[0]: \"node-3\" is a unit's name"},
		{func(r *Rules) { r.SANs = []string{"a,b"} }, "policy.sans[0]"},
		{func(r *Rules) { r.URIs = []string{"spiffe://corp/["} }, "policy.uris[0]"},
		{func(r *Rules) { r.Keys = map[string][]int{"dsa": {1024}} }, "policy.keys.dsa"},
		{func(r *Rules) { r.Keys = map[string][]int{"rsa": {1024}} }, "policy.keys.rsa: size 1024"},
		{func(r *Rules) { r.Keys = nil }, "policy.keys: allows no key"},
		{func(r *Rules) { r.MaxCSRBytes = 10 }, "policy.max_csr_bytes"},
		{func(r *Rules) { r.MaxSANs = 0 }, "policy.max_sans"},
		{func(r *Rules) { r.MaxValidity = 200 * 8760 * time.Hour }, "policy.max_validity"},
		{func(r *Rules) { r.CommonName = "{{.Unit" }, "certificate.common_name"},
	}
	for _, tt := range tests {
		r := Defaults()
		tt.edit(&r)
		if _, err := New(r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New = %v, want an error containing %q", err, tt.want)
		}
	}
}

func TestValidityIsCappedByTheCA(t *testing.T) {
	now := time.Now()
	ca := pkitest.NewCA(t, "ca", now) // valid for a year
	pol := MustNew(Defaults())
	if got := pol.Validity(720*time.Hour, ca.Cert, now); got != 720*time.Hour {
		t.Errorf("Validity(720h) = %s", got)
	}
	if got := pol.Validity(8000*time.Hour, ca.Cert, now.Add(8000*time.Hour)); got > ca.Cert.NotAfter.Sub(now.Add(8000*time.Hour)) {
		t.Errorf("Validity outlives the CA: %s", got)
	}
	if got := pol.Validity(100000*time.Hour, nil, now); got != Defaults().MaxValidity {
		t.Errorf("Validity(100000h) = %s, want policy.max_validity", got)
	}
}

// policy.max_csr_bytes is a limit to the byte: a CSR of exactly that size is checked
// further, one byte over it is refused by rule size.
func TestCSRSizeLimitIsExact(t *testing.T) {
	var dns []string
	for i := 0; i < 40; i++ {
		dns = append(dns, fmt.Sprintf("n%d.example", i))
	}
	csr := pkitest.MakeCSR(t, pkitest.Request{Subject: pkix.Name{CommonName: "node/0"}, DNS: dns})
	if len(csr) <= 1024 {
		t.Fatalf("the CSR is %d bytes, under the smallest limit allowed", len(csr))
	}
	for _, tt := range []struct {
		limit int
		rule  Rule // of the refusal; the SANs are not allowed, so a CSR within the limit is refused by another rule
	}{
		{len(csr), RuleNotAllowed},
		{len(csr) - 1, RuleSize},
	} {
		rules := Defaults()
		rules.MaxCSRBytes = tt.limit
		_, err := MustNew(rules).Check(Request{Unit: "node/0", CSRPEM: []byte(csr), Profile: "peer"})
		refusal, ok := err.(*Refusal)
		if !ok || refusal.Rule != tt.rule {
			t.Errorf("a %d-byte CSR under max_csr_bytes %d: %v, want a refusal by rule %s", len(csr), tt.limit, err, tt.rule)
		}
	}
}

// Each limit of the rules at its edges: the edge itself is allowed, one step beyond it
// is refused naming the key.
func TestRuleLimitsAtTheirEdges(t *testing.T) {
	tests := []struct {
		edit func(*Rules)
		want string // "" allowed
	}{
		{func(r *Rules) { r.MaxCSRBytes = 1024 }, ""},
		{func(r *Rules) { r.MaxCSRBytes = 1023 }, "policy.max_csr_bytes"},
		{func(r *Rules) { r.MaxCSRBytes = LimitCSRBytes }, ""},
		{func(r *Rules) { r.MaxCSRBytes = LimitCSRBytes + 1 }, "policy.max_csr_bytes"},
		{func(r *Rules) { r.MaxSANs = 1 }, ""},
		{func(r *Rules) { r.MaxSANs = LimitSANs }, ""},
		{func(r *Rules) { r.MaxSANs = LimitSANs + 1 }, "policy.max_sans"},
		{func(r *Rules) { r.MaxValidity = time.Hour }, ""},
		{func(r *Rules) { r.MaxValidity = time.Hour - time.Second }, "policy.max_validity"},
		{func(r *Rules) { r.MaxValidity = LimitValidity }, ""},
		{func(r *Rules) { r.MaxValidity = LimitValidity + time.Second }, "policy.max_validity"},
		{func(r *Rules) { r.Keys = map[string][]int{"rsa": {2048}} }, ""},
		{func(r *Rules) { r.Keys = map[string][]int{"rsa": {2047}} }, "policy.keys.rsa"},
		{func(r *Rules) { r.Keys = map[string][]int{"rsa": {certutil.MaxRSABits}} }, ""},
		{func(r *Rules) { r.Keys = map[string][]int{"rsa": {certutil.MaxRSABits + 1}} }, "policy.keys.rsa"},
		{func(r *Rules) { r.Keys = map[string][]int{"ecdsa": {521}} }, ""},
		{func(r *Rules) { r.Keys = map[string][]int{"ecdsa": {512}} }, "policy.keys.ecdsa"},
	}
	for _, tt := range tests {
		r := Defaults()
		tt.edit(&r)
		_, err := New(r)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("New(max_csr_bytes %d, max_sans %d, max_validity %s, keys %v) = %v, want %q",
				r.MaxCSRBytes, r.MaxSANs, r.MaxValidity, r.Keys, err, tt.want)
		}
	}
}

// policy.max_sans counts DNS names, IPs and URIs together: exactly the limit is checked
// further, one more is refused by rule san_count. A refused key names what is allowed.
func TestSANCountAndKeyMessages(t *testing.T) {
	rules := Defaults()
	rules.MaxSANs = 3
	rules.SANs = []string{"*.example", "10.0.0.0/8"}
	rules.URIs = []string{"spiffe://corp/*"}
	pol := MustNew(rules)
	for _, tt := range []struct {
		req  pkitest.Request
		rule Rule // "" signed
	}{
		{pkitest.Request{DNS: []string{"node-0"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, URIs: []string{"spiffe://corp/x"}}, ""},
		{pkitest.Request{DNS: []string{"node-0", "a.example"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, URIs: []string{"spiffe://corp/x"}}, RuleSANCount},
		{pkitest.Request{DNS: []string{"node-0"}, IPs: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2")}, URIs: []string{"spiffe://corp/x"}}, RuleSANCount},
		{pkitest.Request{DNS: []string{"node-0"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, URIs: []string{"spiffe://corp/x", "spiffe://corp/y"}}, RuleSANCount},
	} {
		tt.req.Subject = pkix.Name{CommonName: "node/0"}
		_, err := pol.Check(Request{Unit: "node/0", CSRPEM: []byte(pkitest.MakeCSR(t, tt.req)), Profile: "peer"})
		if got := ruleOf(err); got != tt.rule {
			t.Errorf("%d DNS, %d IP, %d URI SANs under max_sans 3: %v, want rule %q",
				len(tt.req.DNS), len(tt.req.IPs), len(tt.req.URIs), err, tt.rule)
		}
	}
	rules = Defaults()
	rules.Keys = map[string][]int{"ecdsa": {384}, "ed25519": {0}}
	_, err := MustNew(rules).Check(Request{Unit: "node/0", CSRPEM: []byte(pkitest.CSR(t, pkitest.NewKey(t), "node/0", "node-0")), Profile: "peer"})
	if ruleOf(err) != RuleKey || !strings.Contains(err.Error(), "ecdsa [384], ed25519") || strings.Contains(err.Error(), "rsa") {
		t.Errorf("a P-256 key under keys {ecdsa: [384], ed25519}: %v, want a refusal naming exactly what is allowed", err)
	}
}

func ruleOf(err error) Rule {
	if r, ok := err.(*Refusal); ok {
		return r.Rule
	}
	if err != nil {
		return "not a refusal"
	}
	return ""
}

// countingMemo keeps one CSR and counts the parses it let through.
type countingMemo struct {
	kept   *x509.CertificateRequest
	parses int
}

func (m *countingMemo) Remember(parse func() (*x509.CertificateRequest, error)) (*x509.CertificateRequest, error) {
	if m.kept != nil {
		return m.kept, nil
	}
	m.parses++
	csr, err := parse()
	if err == nil {
		m.kept = csr
	}
	return csr, err
}

// A caller's CSRMemo spares the parse and signature check of a CSR seen before, and
// the size and profile checks still come first.
func TestCheckUsesTheCallersMemo(t *testing.T) {
	p := MustNew(Defaults())
	csr := pkitest.CSR(t, pkitest.NewKey(t), "node/0", "node-0")
	memo := &countingMemo{}
	for range 3 {
		if _, err := p.Check(Request{Unit: "node/0", CSRPEM: []byte(csr), Profile: "peer", Verified: memo}); err != nil {
			t.Fatal(err)
		}
	}
	if memo.parses != 1 {
		t.Errorf("3 checks parsed the CSR %d times through the memo, want 1", memo.parses)
	}
	if _, err := p.Check(Request{Unit: "node/0", CSRPEM: []byte(csr), Profile: "admin", Verified: memo}); err == nil {
		t.Error("a kept CSR skipped the profile check")
	}
}
