// Package minimal is a complete tlsrelay backend: keys, CSRs, a CA kept in the state
// directory, and signing, with the sdk and Go's standard library only. It passes the
// conformance kit (sdk/plugintest); cmd/tlsrelay-plugin-minimal serves it.
package minimal

import (
	"context"
	"crypto"
	"crypto/x509"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// New returns the backend, unconfigured.
func New() sdk.Backend { return &minimal{} }

// minimal embeds sdk.Unimplemented, so the secret calls it does not claim answer
// Unimplemented.
type minimal struct {
	sdk.Unimplemented

	mu     sync.Mutex
	dir    string
	caCert *x509.Certificate
	caKey  crypto.Signer
	caPEM  []byte
}

func (m *minimal) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "minimal", Version: "0.2.0",
		Capabilities: []sdk.Capability{sdk.CapCreateCSR, sdk.CapSignCSR, sdk.CapCA}}, nil
}

func (m *minimal) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	var cfg struct{} // no options: DecodeConfig refuses any key
	if err := sdk.DecodeConfig(req.ConfigJSON, &cfg); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dir, m.caCert = req.StateDir, nil
	return nil
}

// CreateCSR: the request checked, a key made, the CSR and the key as PEM.
func (m *minimal) CreateCSR(_ context.Context, req sdk.CSRRequest) (sdk.CSR, error) {
	return certutil.NewCSR(req)
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
	// The profile, the CSR (PEM, signature, one CN, key, SANs), the validity:
	// InvalidArgument when bad.
	plan, err := certutil.CheckSignRequest(req, 30*24*time.Hour)
	if err != nil {
		return sdk.Certificate{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadCA(); err != nil {
		return sdk.Certificate{}, err
	}
	certPEM, err := plan.Sign(m.caCert, m.caKey)
	if err != nil {
		return sdk.Certificate{}, sdk.Errorf(sdk.CodeInternal, req.Unit, "%v", err)
	}
	return sdk.Certificate{ChainPEM: certPEM}, nil
}

// loadCA loads the CA from the state directory, which processes sharing it create
// once (castore locks it). Called with m.mu held.
func (m *minimal) loadCA() error {
	if m.caCert != nil {
		return nil
	}
	if m.dir == "" {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "minimal", "Configure has not been called")
	}
	stored, _, err := castore.LoadOrCreate(m.dir, func() (castore.CA, error) {
		cert, key, err := certutil.NewCA("minimal CA", 10*365*24*time.Hour)
		return castore.CA{CertPEM: cert, KeyPEM: key}, err
	})
	if err == nil {
		m.caCert, m.caKey, err = stored.Parse()
	}
	if err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, m.dir, "%v", err)
	}
	m.caPEM = stored.CertPEM
	return nil
}
