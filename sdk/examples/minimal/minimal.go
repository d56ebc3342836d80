// Package minimal is a complete tlsrelay backend: keys, CSRs, a CA kept in the state
// directory, and signing, with Go's standard library and the sdk only. It passes the
// conformance kit (sdk/plugintest); cmd/tlsrelay-plugin-minimal serves it.
package minimal

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// New returns the backend, unconfigured.
func New() sdk.Backend { return &minimal{} }

// minimal makes keys and CSRs and signs them with a CA it keeps in its state directory,
// using nothing but Go's standard library. It embeds sdk.Unimplemented, so the secret
// calls it does not claim answer Unimplemented.
type minimal struct {
	sdk.Unimplemented

	mu     sync.Mutex
	dir    string
	caCert *x509.Certificate
	caKey  crypto.Signer
	caPEM  []byte
}

func (m *minimal) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "minimal", Version: "0.1.0",
		Capabilities: []sdk.Capability{sdk.CapCreateCSR, sdk.CapSignCSR, sdk.CapCA}}, nil
}

func (m *minimal) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	var cfg struct{} // this backend has no options; DecodeConfig refuses any key
	if err := sdk.DecodeConfig(req.ConfigJSON, &cfg); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dir, m.caCert = req.StateDir, nil
	return nil
}

func (m *minimal) CreateCSR(_ context.Context, req sdk.CSRRequest) (sdk.CSR, error) {
	if err := certutil.CheckCSRRequest(req); err != nil {
		return sdk.CSR{}, err
	}
	key, err := newKey(req.Key)
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInternal, req.CommonName, "%v", err)
	}
	dns, ips := certutil.SplitSANs(req.SANs)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: req.CommonName}, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInvalidArgument, req.CommonName, "%v", err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return sdk.CSR{
		CSRPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func newKey(k sdk.KeySpec) (crypto.Signer, error) {
	if k.Algorithm == "rsa" {
		return rsa.GenerateKey(rand.Reader, k.Size)
	}
	curve := elliptic.P256()
	if k.Size == 384 {
		curve = elliptic.P384()
	}
	return ecdsa.GenerateKey(curve, rand.Reader)
}

func (m *minimal) CA(context.Context) (sdk.CA, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadCA(); err != nil {
		return sdk.CA{}, err
	}
	return sdk.CA{BundlePEM: m.caPEM}, nil
}

func (m *minimal) SignCSR(_ context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	// The profile, the CSR and its signature, the validity: InvalidArgument when bad.
	plan, err := certutil.CheckSignRequest(req, 30*24*time.Hour)
	if err != nil {
		return sdk.Certificate{}, err
	}
	csr := plan.CSR
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	now := time.Now()
	tmpl := &x509.Certificate{
		// The subject is rebuilt from the common name; the SANs are the checked ones.
		SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: pkix.Name{CommonName: csr.Subject.CommonName},
		DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses, URIs: csr.URIs,
		NotBefore: now.Add(-certutil.Backdate), NotAfter: now.Add(plan.Validity),
		KeyUsage: plan.Usages.Key, ExtKeyUsage: plan.Usages.Extended, BasicConstraintsValid: true,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadCA(); err != nil {
		return sdk.Certificate{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.caCert, csr.PublicKey, m.caKey)
	if err != nil {
		return sdk.Certificate{}, sdk.Errorf(sdk.CodeInternal, req.Unit, "%v", err)
	}
	return sdk.Certificate{ChainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// loadCA reads the CA from the state directory, creating it on first use. Called with m.mu held.
func (m *minimal) loadCA() error {
	if m.caCert != nil {
		return nil
	}
	if m.dir == "" {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "minimal", "Configure has not been called")
	}
	certPath, keyPath := filepath.Join(m.dir, "ca.pem"), filepath.Join(m.dir, "ca-key.pem")
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createCA(certPath, keyPath); err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, m.dir, "create CA: %v", err)
		}
		certPEM, err = os.ReadFile(certPath)
	}
	if err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, certPath, "%v", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, keyPath, "%v", err)
	}
	certs, err := certutil.ParseCertificates(certPEM)
	if err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, certPath, "%v", err)
	}
	block, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, keyPath, "%v", err)
	}
	m.caCert, m.caKey, m.caPEM = certs[0], key.(crypto.Signer), certPEM
	return nil
}

func createCA(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "minimal CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
