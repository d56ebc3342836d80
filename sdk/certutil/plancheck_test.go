package certutil

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// A remote CA's answer is checked against the plan: what the plan would sign passes,
// and each way a misconfigured CA departs from it is named.
func TestSignPlanCheck(t *testing.T) {
	caPEM, caKeyPEM, err := NewCA("plan CA", 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cas, _ := ParseCertificates(caPEM)
	other, _, _ := NewCA("other CA", 24*time.Hour)
	otherCA, _ := ParseCertificates(other)
	caKey, _ := ParsePrivateKeyPEM(caKeyPEM)
	short, _ := NewCAForKey("plan CA", 24*time.Hour, caKey) // the same key, a shorter life
	shortCA, _ := ParseCertificates(short)
	csr, err := NewCSR(sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: "web/0", SANs: []string{"web-0", "10.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := CheckSignRequest(sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: sdk.ProfilePeer, Validity: 48 * time.Hour, Unit: "web/0"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := NewKey(sdk.KeySpec{Algorithm: "ecdsa", Size: 256})
	sign := func(edit func(*x509.Certificate)) []byte {
		serial, _ := RandomSerial()
		tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "web/0"},
			DNSNames: plan.CSR.DNSNames, IPAddresses: plan.CSR.IPAddresses,
			NotBefore: time.Now().Add(-Backdate), NotAfter: time.Now().Add(48 * time.Hour),
			KeyUsage: plan.Usages.Key, ExtKeyUsage: plan.Usages.Extended, BasicConstraintsValid: true}
		pub := plan.CSR.PublicKey
		if edit != nil {
			edit(tmpl)
			if tmpl.SubjectKeyId != nil { // marks "another key"
				pub, tmpl.SubjectKeyId = stranger.Public(), nil
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, cas[0], pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return CertPEM(der)
	}
	signed, err := plan.Sign(cas[0], caKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		chain []byte
		ca    *x509.Certificate
		want  string // "" passes
	}{
		{"what the plan signs", signed, cas[0], ""},
		{"the same, built by hand", sign(nil), cas[0], ""},
		{"O and OU copied into the subject", sign(func(c *x509.Certificate) {
			c.Subject.Organization, c.Subject.OrganizationalUnit = []string{"Acme"}, []string{"ops"}
		}), cas[0], "subject"},
		{"a SAN dropped", sign(func(c *x509.Certificate) { c.DNSNames = nil }), cas[0], "DNS names"},
		{"an IP added", sign(func(c *x509.Certificate) { c.IPAddresses = append(c.IPAddresses, c.IPAddresses[0].To16()[:16]) }), cas[0], "IP addresses"},
		{"a fixed lifetime of a year", sign(func(c *x509.Certificate) { c.NotAfter = time.Now().Add(365 * 24 * time.Hour) }), cas[0], "validity 48h"},
		{"half the validity", sign(func(c *x509.Certificate) { c.NotAfter = time.Now().Add(24 * time.Hour) }), cas[0], "validity 48h"},
		{"the validity in whole days, from now", sign(func(c *x509.Certificate) { c.NotBefore = time.Now() }), cas[0], ""},
		{"server usage only", sign(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), cas[0], "extended key usages"},
		{"a CA certificate", sign(func(c *x509.Certificate) { c.IsCA = true }), cas[0], "CA certificate"},
		{"a leaf that may sign certificates", sign(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }), cas[0], "may sign certificates"},
		{"no digitalSignature", sign(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }), cas[0], "lacks digitalSignature"},
		{"an email address added", sign(func(c *x509.Certificate) { c.EmailAddresses = []string{"root@example.com"} }), cas[0], "email addresses"},
		{"valid only from tomorrow", sign(func(c *x509.Certificate) { c.NotBefore = time.Now().Add(24 * time.Hour) }), cas[0], "the signer's clock or this host's is wrong"},
		{"another key", sign(func(c *x509.Certificate) { c.SubjectKeyId = []byte{1} }), cas[0], "not the CSR's"},
		{"another CA", signed, otherCA[0], "not signed by the CA"},
		{"outliving its CA", signed, shortCA[0], "outlives its CA"},
		{"not a certificate", []byte("<html>502</html>"), cas[0], "the signer's answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := plan.Check(tt.chain, tt.ca, "web/0")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !sdk.IsCode(err, sdk.CodeInternal)):
				t.Fatalf("err = %v, want Internal naming %q", err, tt.want)
			}
		})
	}
}

// A CA made for a key that exists already (an HSM's) is that key's, and a CA.
func TestNewCAForKey(t *testing.T) {
	key, _ := NewKey(sdk.KeySpec{Algorithm: "ecdsa", Size: 384})
	certPEM, err := NewCAForKey("token CA", 30*24*time.Hour, key)
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := ParseCertificates(certPEM)
	if c := certs[0]; !c.IsCA || c.Subject.CommonName != "token CA" || !SamePublicKey(c.PublicKey, key.Public()) || c.CheckSignatureFrom(c) != nil {
		t.Fatalf("CA %+v is not a self-signed CA for the key", c.Subject)
	}
	if _, err := NewCAForKey("token CA", 0, key); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		t.Fatalf("a CA validity of 0: %v, want InvalidArgument", err)
	}
}
