package barbican

import (
	"crypto/x509"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/plugins/internal/secretparse"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// FuzzSecretParsing feeds what a Barbican secret may hold (a PEM bundle, PKCS#12, or
// anything at all) to the parsers. They must never panic, and a secret they accept
// holds a certificate whose public key is the key's.
func FuzzSecretParsing(f *testing.F) {
	ca := pkitest.NewCA(f, "fuzz CA", time.Now())
	key := pkitest.NewKey(f)
	cert, certPEM := ca.Issue(f, key.Public(), pkitest.Leaf{CN: "listener"})
	keyPEM := pkitest.KeyPEM(f, key)
	f.Add([]byte(certPEM + string(keyPEM) + ca.PEM))
	f.Add([]byte(certPEM))
	f.Add(append([]byte(certPEM), keyPEM[:40]...))
	if p12, err := pkcs12.Modern.Encode(key, cert, []*x509.Certificate{ca.Cert}, ""); err == nil {
		f.Add(p12)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func(string, []byte) (sdk.Secret, error){secretparse.FromPEMBundle, secretparse.FromPKCS12} {
			s, err := parse("ref", data)
			if err != nil {
				continue
			}
			certs, err := certutil.ParseCertificates(s.CertificatePEM)
			if err != nil {
				t.Fatalf("accepted a secret whose certificate does not parse: %v", err)
			}
			pub, err := certutil.PublicKeyOfPrivatePEM([]byte(s.Key))
			if err != nil || !certutil.SamePublicKey(certs[0].PublicKey, pub) {
				t.Fatalf("accepted a secret whose key is not the certificate's: %v", err)
			}
		}
	})
}
