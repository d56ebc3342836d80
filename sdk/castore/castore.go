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
	// KeyRefFile names a key held elsewhere (an HSM's: a PKCS#11 URI, a label), for a
	// CA whose key is no PEM to keep here; mode 0600.
	KeyRefFile = "ca-key.ref"
	lockFile   = ".lock"
)

// Parse returns the CA's certificate (the first of CertPEM) and its private key. A CA
// whose key is held elsewhere (KeyRef) has none here: use Certificate, and find the key
// by its reference.
func (ca CA) Parse() (*x509.Certificate, crypto.Signer, error) {
	cert, err := ca.Certificate()
	if err != nil {
		return nil, nil, err
	}
	if len(ca.KeyPEM) == 0 && ca.KeyRef != "" {
		return nil, nil, fmt.Errorf("the key of CA %q is held elsewhere (%s), not here", cert.Subject.CommonName, ca.KeyRef)
	}
	key, err := certutil.ParsePrivateKeyPEM(ca.KeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	if !certutil.SamePublicKey(cert.PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("the CA key does not belong to CA %q", cert.Subject.CommonName)
	}
	return cert, key, nil
}

// Certificate returns the CA's certificate (the first of CertPEM).
func (ca CA) Certificate() (*x509.Certificate, error) {
	certs, err := certutil.ParseCertificates(ca.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return certs[0], nil
}

// CA is the PEM of a stored CA, and its key: as PEM, or for a key that is no PEM to
// keep (in an HSM), a reference to it (KeyRef). One of KeyPEM and KeyRef.
type CA struct {
	CertPEM []byte
	KeyPEM  []byte
	KeyRef  string
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
	if errors.Is(err, fs.ErrNotExist) {
		if ref, rerr := os.ReadFile(filepath.Join(dir, KeyRefFile)); rerr == nil {
			return CA{CertPEM: certPEM, KeyRef: string(ref)}, nil
		}
	}
	if err != nil {
		// Not ErrNotExist for the caller: a certificate without its key must not be
		// silently replaced by a new CA.
		return CA{}, fmt.Errorf("CA certificate %s exists but its key cannot be read: %v", certPath, err)
	}
	return CA{CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// store writes the key (or its reference) first, so that a crash never leaves a
// certificate without its key; the other of the two goes.
func store(dir string, ca CA) error {
	certPath, keyPath := Paths(dir)
	refPath := filepath.Join(dir, KeyRefFile)
	if (len(ca.KeyPEM) == 0) == (ca.KeyRef == "") {
		return errors.New("store CA: give its key as PEM or a reference to it, one of the two")
	}
	write, stale, body := keyPath, refPath, ca.KeyPEM
	if ca.KeyRef != "" {
		write, stale, body = refPath, keyPath, []byte(ca.KeyRef)
	}
	if err := atomicfile.Write(write, body, 0o600); err != nil {
		return fmt.Errorf("store CA key: %w", err)
	}
	if err := os.Remove(stale); err != nil && !errors.Is(err, fs.ErrNotExist) {
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
	if len(ca.KeyPEM) == 0 {
		return sdk.CAKeyPair{}, sdk.Errorf(sdk.CodeFailedPrecondition, dir, "the CA's key is held elsewhere (%s): it cannot be exported", ca.KeyRef)
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
