package certutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// The x509 chores every backend in Go repeats, done once.

// NewKey makes a private key for a key spec (checked with CheckKeySpec first).
func NewKey(k sdk.KeySpec) (crypto.Signer, error) {
	if err := CheckKeySpec(k); err != nil {
		return nil, err
	}
	switch {
	case k.Algorithm == "rsa":
		return rsa.GenerateKey(rand.Reader, k.Size)
	case k.Size == 384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(key crypto.Signer) (sdk.PrivateKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CertPEM encodes a DER certificate as PEM.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// NewCSR checks a CSR request (CheckCSRRequest), makes its key, and returns the CSR and
// the key, both PEM: what CreateCSR returns.
func NewCSR(req sdk.CSRRequest) (sdk.CSR, error) {
	if err := CheckCSRRequest(req); err != nil {
		return sdk.CSR{}, err
	}
	key, err := NewKey(req.Key)
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInternal, req.CommonName, "new key: %v", err)
	}
	return NewCSRForKey(req, key)
}

// NewCSRForKey makes the CSR req asks for with an existing key (req.Key is not used):
// a renewal that keeps its key.
func NewCSRForKey(req sdk.CSRRequest, key crypto.Signer) (sdk.CSR, error) {
	dns, ips := SplitSANs(req.SANs)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: req.CommonName}, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInvalidArgument, req.CommonName, "%v", err)
	}
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInternal, req.CommonName, "%v", err)
	}
	return sdk.CSR{CSRPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), Key: keyPEM}, nil
}

// RandomSerial returns a positive serial of 159 random bits, as RFC 5280 allows (at
// most 20 octets) and never zero.
func RandomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// NewCA makes a self-signed ECDSA P-256 CA valid for validity (backdated by Backdate),
// and returns its certificate and key, PEM.
func NewCA(commonName string, validity time.Duration) (certPEM []byte, keyPEM sdk.PrivateKey, err error) {
	key, err := NewKey(sdk.KeySpec{Algorithm: "ecdsa", Size: 256})
	if err != nil {
		return nil, nil, err
	}
	if certPEM, err = NewCAForKey(commonName, validity, key); err != nil {
		return nil, nil, err
	}
	keyPEM, err = KeyPEM(key)
	return certPEM, keyPEM, err
}

// subjectKeyID is RFC 7093's first method: the leftmost 160 bits of the SHA-256 of the
// subjectPublicKey bits, as Go's x509 makes a CA's (x509.CreateCertificate fills it in
// for CAs only).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("the CSR's public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("the CSR's public key: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// NewCAForKey makes a self-signed CA certificate for a key that already exists and may
// never leave where it is (a key in an HSM, through crypto11), valid for validity
// (backdated by Backdate); PEM.
func NewCAForKey(commonName string, validity time.Duration, key crypto.Signer) ([]byte, error) {
	if validity <= 0 {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, commonName, "a CA validity of %s", validity)
	}
	serial, err := RandomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-Backdate), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign the CA %q: %w", commonName, err)
	}
	return CertPEM(der), nil
}

// Sign issues the certificate a checked plan asks for, with ca and its key: the
// subject rebuilt from the CSR's common name, its checked DNS, IP and URI SANs, the
// profile's usages, a random serial, from Backdate ago for the plan's validity, a
// subject key identifier (and ca's as the authority key identifier). It returns the
// certificate, PEM.
func (p SignPlan) Sign(ca *x509.Certificate, caKey crypto.Signer) ([]byte, error) {
	serial, err := RandomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(p.CSR.PublicKey)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: p.CSR.Subject.CommonName},
		DNSNames: p.CSR.DNSNames, IPAddresses: p.CSR.IPAddresses, URIs: p.CSR.URIs,
		NotBefore: now.Add(-Backdate), NotAfter: now.Add(p.Validity),
		KeyUsage: p.Usages.Key, ExtKeyUsage: p.Usages.Extended, BasicConstraintsValid: true,
		SubjectKeyId: ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, p.CSR.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return CertPEM(der), nil
}
