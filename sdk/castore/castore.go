// Package castore keeps a backend's CA in a directory, as cfssl's and openssl's tools
// name its files (ca.pem, ca-key.pem), and creates it exactly once: an exclusive lock on
// the directory serialises plugin processes that share it (units on one host, or a
// leader change), so one creates the CA and the others load it.
package castore

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// The files in a CA directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem" // mode 0600
	lockFile = ".lock"
)

// Parse returns the CA's certificate (the first of CertPEM) and its private key.
func (ca CA) Parse() (*x509.Certificate, crypto.Signer, error) {
	certs, err := certutil.ParseCertificates(ca.CertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := certutil.ParsePrivateKeyPEM(ca.KeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	if !certutil.SamePublicKey(certs[0].PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("the CA key does not belong to CA %q", certs[0].Subject.CommonName)
	}
	return certs[0], key, nil
}

// CA is the PEM of a stored CA.
type CA struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Paths returns the certificate and key file paths of the CA in dir.
func Paths(dir string) (cert, key string) {
	return filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
}

// LoadOrCreate loads the CA in dir, or calls create and stores what it returns.
func LoadOrCreate(dir string, create func() (CA, error)) (ca CA, created bool, err error) {
	if err := safedir.Ensure(dir, 0o700); err != nil {
		return CA{}, false, fmt.Errorf("CA directory: %w", err)
	}
	unlock, err := Lock(dir)
	if err != nil {
		return CA{}, false, err
	}
	defer unlock()
	ca, err = load(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		return ca, false, err
	}
	if ca, err = create(); err != nil {
		return CA{}, false, err
	}
	return ca, true, store(dir, ca)
}

// Load returns the CA stored in dir; a missing CA is fs.ErrNotExist (wrapped).
func Load(dir string) (CA, error) {
	unlock, err := Lock(dir)
	if err != nil {
		return CA{}, err
	}
	defer unlock()
	return load(dir)
}

// Replace stores ca in dir in place of whatever CA is there (an imported CA).
func Replace(dir string, ca CA) error {
	if err := safedir.Ensure(dir, 0o700); err != nil {
		return fmt.Errorf("CA directory: %w", err)
	}
	unlock, err := Lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return store(dir, ca)
}

// Lock takes an exclusive lock on dir, waiting for it; unlock releases it. It serialises
// processes that share a CA directory.
func Lock(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("CA lock in %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock CA directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// load returns fs.ErrNotExist (wrapped) when there is no CA certificate yet.
func load(dir string) (CA, error) {
	certPath, keyPath := Paths(dir)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return CA{}, err
	}
	if err := safedir.CheckKeyFile(keyPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return CA{}, fmt.Errorf("refusing the CA in %s: %w", dir, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		// Not ErrNotExist for the caller: a certificate without its key must not be
		// silently replaced by a new CA.
		return CA{}, fmt.Errorf("CA certificate %s exists but its key cannot be read: %v", certPath, err)
	}
	return CA{CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// store writes the key first, so that a crash never leaves a certificate without its key.
func store(dir string, ca CA) error {
	certPath, keyPath := Paths(dir)
	if err := atomicfile.Write(keyPath, ca.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("store CA key: %w", err)
	}
	if err := atomicfile.Write(certPath, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("store CA certificate: %w", err)
	}
	return nil
}

// ExportCA returns the CA in dir for sdk.Backend.ExportCA.
func ExportCA(dir string) (sdk.CAKeyPair, error) {
	ca, err := Load(dir)
	if err != nil {
		return sdk.CAKeyPair{}, sdk.Errorf(sdk.CodeFailedPrecondition, dir, "no CA to export: %v", err)
	}
	return sdk.CAKeyPair{CertPEM: ca.CertPEM, Key: ca.KeyPEM}, nil
}

// ImportCA checks ca and stores it in dir for sdk.Backend.ImportCA.
func ImportCA(dir string, ca sdk.CAKeyPair) error {
	if _, err := certutil.CheckCAKeyPair(ca); err != nil {
		return err
	}
	if err := Replace(dir, CA{CertPEM: ca.CertPEM, KeyPEM: ca.Key}); err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, dir, "%v", err)
	}
	return nil
}
