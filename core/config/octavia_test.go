package config

import (
	"crypto/x509/pkix"
	"net"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// configs/octavia.yaml lets an amphora obtain its own ID, the one its unit's name
// carries, and nothing else: what a compromised amphora asks for with its own etcd
// credentials, and what the shipped policy used to sign (4 ID-shaped names in one
// certificate, another amphora's future ID, ca-fe-ba-be-0), is refused by the policy
// every leader checks before any signer sees a CSR.
func TestOctaviaPolicyBindsTheAmphoraID(t *testing.T) {
	cfg, err := Load("../../configs/octavia.yaml", []string{"cfssl", "easyrsa", "openssl", "barbican", "file"})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := cfg.SigningPolicy()
	if err != nil {
		t.Fatal(err)
	}
	const own, other = "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50", "0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51"
	amphora := "amphora/" + own
	ownName := policy.UnitDNSName(amphora)
	key := pkitest.NewKey(t)
	csr := func(unit string, sans ...string) []byte {
		cn, err := cfg.Certificate.CommonNameFor(unit)
		if err != nil {
			t.Fatal(err)
		}
		r := pkitest.Request{Key: key, Subject: pkix.Name{CommonName: cn}}
		for _, s := range sans {
			if ip := net.ParseIP(s); ip != nil {
				r.IPs = append(r.IPs, ip)
			} else {
				r.DNS = append(r.DNS, s)
			}
		}
		return []byte(pkitest.MakeCSR(t, r))
	}
	tests := []struct {
		name    string
		unit    string
		profile string
		csr     []byte
		refusal string // "" when signed
	}{
		{"the amphora's own ID", amphora, "server", csr(amphora, ownName, own), ""},
		{"its own name alone", amphora, "server", csr(amphora, ownName), ""},
		{"another amphora's ID", amphora, "server", csr(amphora, ownName, other), "not allowed"},
		{"its own ID and another's", amphora, "server", csr(amphora, ownName, own, other), "not allowed"},
		{"an ID no amphora has yet", amphora, "server", csr(amphora, ownName, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"), "not allowed"},
		{"ID-shaped names", amphora, "server", csr(amphora, ownName, "a1-b-c-d-e", "ca-fe-ba-be-0"), "not allowed"},
		{"its ID in upper case", amphora, "server", csr(amphora, ownName, strings.ToUpper(own)), ""}, // names compare case-insensitively: its own
		{"another amphora's unit name", amphora, "server", csr(amphora, ownName, "amphora-"+other), "the name of unit amphora/" + other},
		{"a controller's name", amphora, "server", csr(amphora, ownName, "controller-0"), "the name of unit controller/0"},
		{"an IP", amphora, "server", csr(amphora, ownName, "10.0.0.11"), "not allowed"},
		{"a wildcard", amphora, "server", csr(amphora, ownName, "*.svc"), "not allowed"},
		{"the client profile", amphora, "client", csr(amphora, ownName, own), "not allowed to " + amphora},
		{"an amphora named by a number asking for an ID", "amphora/3", "server", csr("amphora/3", "amphora-3", own), "not allowed"},
		{"a controller asking for an amphora's ID", "controller/0", "client", csr("controller/0", "controller-0", own), "not allowed"},
		{"another amphora's common name", amphora, "server", csr("amphora/"+other, ownName), "may ask only for"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pol.Check(policy.Request{Unit: tt.unit, CSRPEM: tt.csr, Profile: tt.profile})
			switch {
			case tt.refusal == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refusal != "" && (err == nil || !strings.Contains(err.Error(), tt.refusal)):
				t.Fatalf("err = %v, want a refusal containing %q", err, tt.refusal)
			}
		})
	}
}
