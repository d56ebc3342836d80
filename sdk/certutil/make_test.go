package certutil

import (
	"bytes"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// A CA made by NewCA signs, through a checked plan, a certificate for a CSR made by
// NewCSR that verifies for its name and usages; serials are random and in range.
func TestMakeCASignAndSerials(t *testing.T) {
	caPEM, caKeyPEM, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caCerts, _ := ParseCertificates(caPEM)
	caKey, err := ParsePrivateKeyPEM(caKeyPEM)
	if err != nil || !caCerts[0].IsCA {
		t.Fatalf("NewCA: %v, IsCA %v", err, caCerts[0].IsCA)
	}
	csr, err := NewCSR(sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 384}, CommonName: "db/0", SANs: []string{"db-0", "10.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := CheckSignRequest(sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: sdk.ProfileServer, Unit: "db/0"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, err := plan.Sign(caCerts[0], caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ParseCertificates(leafPEM)
	pool := x509.NewCertPool()
	pool.AddCert(caCerts[0])
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: "db-0", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("the signed leaf does not verify: %v", err)
	}
	if leaf[0].Subject.String() != "CN=db/0" || len(leaf[0].IPAddresses) != 1 {
		t.Errorf("leaf subject %q, IPs %v", leaf[0].Subject, leaf[0].IPAddresses)
	}
	// Its key identifiers: its own (RFC 7093, as Go makes a CA's), and its CA's.
	want, _ := subjectKeyID(leaf[0].PublicKey)
	if len(leaf[0].SubjectKeyId) != 20 || !bytes.Equal(leaf[0].SubjectKeyId, want) {
		t.Errorf("leaf subject key identifier %x, want %x", leaf[0].SubjectKeyId, want)
	}
	if len(caCerts[0].SubjectKeyId) == 0 || !bytes.Equal(leaf[0].AuthorityKeyId, caCerts[0].SubjectKeyId) {
		t.Errorf("leaf authority key identifier %x, want the CA's %x", leaf[0].AuthorityKeyId, caCerts[0].SubjectKeyId)
	}
	limit := new(big.Int).Lsh(big.NewInt(1), 159)
	seen := map[string]bool{}
	for range 100 {
		s, err := RandomSerial()
		if err != nil || s.Sign() <= 0 || s.Cmp(limit) > 0 || seen[s.String()] {
			t.Fatalf("RandomSerial = %v, %v", s, err)
		}
		seen[s.String()] = true
	}
}
