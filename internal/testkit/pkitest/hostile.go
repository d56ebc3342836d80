package pkitest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// Hostile is a CSR an attacking unit (or a careless operator) could send: unit node/0
// of a group under the default policy sends it, and the policy refuses it with a
// reason containing Reason. Backend says every backend refuses it on its own too.
type Hostile struct {
	Name    string
	Unit    string
	CSRPEM  string
	Backend bool
	Reason  string
}

// Request is plugintest.CSRRequest, for MakeCSR.
type Request = plugintest.CSRRequest

// MakeCSR builds a PEM CSR for r.
func MakeCSR(tb testing.TB, r Request) string {
	tb.Helper()
	return plugintest.MakeCSR(r)
}

// backendReasons is the policy's reason for each of plugintest.HostileCSRs.
var backendReasons = map[string]string{
	"two common names":                      "2 common names",
	"an email SAN":                          "email SANs",
	"an RSA-1024 key":                       "rsa 1024",
	"a bare wildcard SAN":                   `"*" is not a DNS name`,
	"a SAN with a comma and an equals sign": "is not a DNS name",
	"10,000 SANs":                           "max_csr_bytes",
	"PEM headers that make openssl ask for a pass phrase": "headers",
	"two PEM blocks": "more than one block",
	"a malformed PEM block before a valid one":        "a malformed block comes before",
	"text after the PEM block":                        "only whitespace may follow",
	"a common name with a newline and an equals sign": "common name",
}

// HostileCSRs returns the table every signing path is tested with: the findings of
// trying tlsrelay as an attacker would.
func HostileCSRs(tb testing.TB) []Hostile {
	tb.Helper()
	cn := func(name string) pkix.Name { return pkix.Name{CommonName: name} }
	own := func(extra ...string) Request {
		return Request{Subject: cn("node/0"), DNS: append([]string{"node-0"}, extra...)}
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	sans := make([]string, 64)
	for i := range sans {
		sans[i] = fmt.Sprintf("n%d.example", i)
	}
	csr := func(r Request) string { return MakeCSR(tb, r) }
	valid := csr(own())
	table := []Hostile{
		{Name: "another unit's name in upper case", CSRPEM: csr(own("NODE-1")), Reason: `"NODE-1", the name of unit node/1`},
		{Name: "another unit's name with a trailing dot", CSRPEM: csr(own("node-1.")), Reason: `the name of unit node/1`},
		{Name: "the name of a unit that has not joined", CSRPEM: csr(own("node-7")), Reason: `the name of unit node/7`},
		{Name: "another unit's common name", CSRPEM: csr(Request{Subject: cn("node/1"), DNS: []string{"node-0"}}), Reason: `common name "node/1"`},
		{Name: "localhost, not opted in", CSRPEM: csr(own("localhost")), Reason: `"localhost" is not allowed`},
		{Name: "127.0.0.1, not opted in", CSRPEM: csr(Request{Subject: cn("node/0"), DNS: []string{"node-0"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}), Reason: "IP SAN 127.0.0.1 is not allowed"},
		{Name: "a URI SAN no pattern allows", CSRPEM: csr(Request{Subject: cn("node/0"), DNS: []string{"node-0"}, URIs: []string{"spiffe://corp/admin"}}), Reason: "URI SAN"},
		{Name: "an ed25519 key", CSRPEM: csr(Request{Key: edKey, Subject: cn("node/0"), DNS: []string{"node-0"}}), Reason: "ed25519"},
		{Name: "a P-521 key", CSRPEM: csr(Request{Key: p521, Subject: cn("node/0"), DNS: []string{"node-0"}}), Reason: "ecdsa 521"},
		{Name: "a garbage common name", CSRPEM: csr(Request{Subject: cn("node/0\nCN=root"), DNS: []string{"node-0"}}), Reason: "common name"},
		{Name: "65 SANs", CSRPEM: csr(own(sans...)), Reason: "more than policy.max_sans (64)"},
		{Name: "a 5.7 MB CSR", CSRPEM: valid + strings.Repeat(" ", 5_700_000), Reason: "max_csr_bytes"},
	}
	for _, h := range plugintest.HostileCSRs("node/0") {
		reason, ok := backendReasons[h.Name]
		if !ok {
			tb.Fatalf("pkitest: no policy reason for plugintest's hostile CSR %q", h.Name)
		}
		table = append(table, Hostile{Name: h.Name, CSRPEM: h.CSRPEM, Backend: true, Reason: reason})
	}
	for i := range table {
		table[i].Unit = "node/0"
	}
	return table
}
