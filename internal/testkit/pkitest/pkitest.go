// Package pkitest makes throwaway keys, CAs, CSRs and certificates for tests, with Go's
// crypto only: fast, and independent of every backend under test.
package pkitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// NewKey returns a new ECDSA P-256 key.
func NewKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// PEM encodes DER as a PEM block of type typ.
func PEM(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(PEM("PRIVATE KEY", der))
}

// CSR makes a PEM CSR for key with a common name and DNS SANs.
func CSR(tb testing.TB, key crypto.Signer, cn string, dns ...string) string {
	tb.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
	}, key)
	if err != nil {
		tb.Fatal(err)
	}
	return PEM("CERTIFICATE REQUEST", der)
}

// CA is a self-signed test CA.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  string
}

var serial atomic.Int64

// NewCA makes a CA valid from an hour before now to a year after.
func NewCA(tb testing.TB, cn string, now time.Time) CA {
	tb.Helper()
	return newCA(tb, cn, now.Add(-time.Hour), now.Add(365*24*time.Hour), nil)
}

// newCA makes a CA for cn valid from notBefore to notAfter, issued by parent (nil:
// self-signed).
func newCA(tb testing.TB, cn string, notBefore, notAfter time.Time, parent *CA) CA {
	tb.Helper()
	key := NewKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return CA{Cert: cert, Key: key, PEM: PEM("CERTIFICATE", der)}
}

// Leaf shapes a certificate the CA issues; zero times mean from an hour ago to 30 days on.
type Leaf struct {
	CN        string
	DNS       []string
	IPs       []net.IP
	NotBefore time.Time
	NotAfter  time.Time
}

// Issue signs a peer (server and client) certificate for pub.
func (ca CA) Issue(tb testing.TB, pub crypto.PublicKey, l Leaf) (*x509.Certificate, string) {
	tb.Helper()
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = l.NotBefore.Add(30 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: l.CN}, DNSNames: l.DNS, IPAddresses: l.IPs,
		NotBefore: l.NotBefore, NotAfter: l.NotAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, PEM("CERTIFICATE", der)
}

// Intermediate makes a CA that ca issues, valid as long as ca: a group CA under an
// enterprise root (root -> int1 -> int2) is made by two calls.
func (ca CA) Intermediate(tb testing.TB, cn string) CA {
	tb.Helper()
	return newCA(tb, cn, ca.Cert.NotBefore, ca.Cert.NotAfter, &ca)
}
