package cfssl

import (
	"crypto"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	cfcsr "github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/initca"
	"github.com/cloudflare/cfssl/signer/local"

	"github.com/tlsrelay/tlsrelay/internal/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// The CA's files in its directory, as cfssl's own tools name them.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
	lockFile   = ".lock"
)

type authority struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	signer  *local.Signer
}

// loadOrCreateCA loads the CA in dir, or creates it there. An exclusive lock on the
// directory makes this safe when several plugin processes share it (units on one host,
// or a leader change): exactly one creates the CA and the others load it.
func loadOrCreateCA(dir, commonName string, validity time.Duration) (ca *authority, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, sdk.Errorf(sdk.CodeFailedPrecondition, dir, "cannot create CA directory: %v", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, false, err
	}
	defer unlock()

	ca, err = loadCA(dir)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := createCA(dir, commonName, validity); err != nil {
		return nil, false, err
	}
	ca, err = loadCA(dir)
	return ca, true, err
}

func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, dir, "cannot open CA lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, dir, "cannot lock CA directory: %v", err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

func loadCA(dir string) (*authority, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, err // fs.ErrNotExist means: create it
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, filepath.Join(dir, caKeyFile),
			"CA certificate exists but its key cannot be read: %v", err)
	}
	cert, err := helpers.ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, filepath.Join(dir, caCertFile), "CA certificate does not parse: %v", err)
	}
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, filepath.Join(dir, caKeyFile), "CA key does not parse")
	}
	return &authority{cert: cert, certPEM: certPEM, key: key}, nil
}

func createCA(dir, commonName string, validity time.Duration) error {
	certPEM, _, keyPEM, err := initca.New(&cfcsr.CertificateRequest{
		CN:         commonName,
		KeyRequest: &cfcsr.KeyRequest{A: "ecdsa", S: 256},
		CA:         &cfcsr.CAConfig{Expiry: validity.String()},
	})
	if err != nil {
		return sdk.Errorf(sdk.CodeInternal, dir, "cfssl could not create the CA: %v", err)
	}
	// Key first: a certificate without its key is the state loadCA refuses.
	if err := atomicfile.Write(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, dir, "cannot store the CA key: %v", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, caCertFile), certPEM, 0o644); err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, dir, "cannot store the CA certificate: %v", err)
	}
	return nil
}
