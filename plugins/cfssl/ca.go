package cfssl

import (
	"crypto"
	"crypto/x509"
	"time"

	cfcsr "github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/initca"
	"github.com/cloudflare/cfssl/signer/local"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
)

type authority struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	signer  *local.Signer
}

// loadOrCreateCA loads the CA in dir, or creates it there with cfssl's initca.
func loadOrCreateCA(dir, commonName string, validity time.Duration) (*authority, bool, error) {
	stored, created, err := castore.LoadOrCreate(dir, func() (castore.CA, error) {
		certPEM, _, keyPEM, err := initca.New(&cfcsr.CertificateRequest{
			CN:         commonName,
			KeyRequest: &cfcsr.KeyRequest{A: "ecdsa", S: 256},
			CA:         &cfcsr.CAConfig{Expiry: validity.String()},
		})
		return castore.CA{CertPEM: certPEM, KeyPEM: keyPEM}, err
	})
	if err != nil {
		return nil, false, sdk.Errorf(sdk.CodeFailedPrecondition, dir, "%v", err)
	}
	certPath, keyPath := castore.Paths(dir)
	cert, err := helpers.ParseCertificatePEM(stored.CertPEM)
	if err != nil {
		return nil, false, sdk.Errorf(sdk.CodeFailedPrecondition, certPath, "CA certificate does not parse: %v", err)
	}
	key, err := helpers.ParsePrivateKeyPEM(stored.KeyPEM)
	if err != nil {
		return nil, false, sdk.Errorf(sdk.CodeFailedPrecondition, keyPath, "CA key does not parse")
	}
	return &authority{cert: cert, certPEM: stored.CertPEM, key: key}, created, nil
}
