package pkcs11

import (
	"crypto/elliptic"
	"fmt"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// tokenStore keeps the CAs in the token: CA n is a key pair and a certificate, all
// labelled label, with the id "ca-n". The current CA is the one with the highest n;
// GenerateCA adds the next. Processes on one host that share the token take a lock in
// their state directory before they make one, so that they make one, not several.
type tokenStore struct {
	token   *crypto11.Context
	label   string
	lockDir string
}

// current returns the newest CA in the token, making the first if there is none.
func (s tokenStore) current(name string, life time.Duration) (*authority, error) {
	return s.atNewest(func(n int) (*authority, error) {
		if n == 0 {
			return s.make(1, name, life)
		}
		return s.load(n)
	})
}

// next makes the CA after the newest, which becomes the current one.
func (s tokenStore) next(name string, life time.Duration) (*authority, error) {
	return s.atNewest(func(n int) (*authority, error) { return s.make(n+1, name, life) })
}

// atNewest runs fn with the newest CA's n (0: none), holding the host's lock on the
// token (castore.Lock on the state directory) so that no other process makes one
// meanwhile.
func (s tokenStore) atNewest(fn func(n int) (*authority, error)) (*authority, error) {
	if s.lockDir != "" {
		unlock, err := castore.Lock(s.lockDir)
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeUnavailable, s.lockDir, "%v", err)
		}
		defer unlock()
	}
	n, err := s.newest()
	if err != nil {
		return nil, err
	}
	return fn(n)
}

func caID(n int) []byte { return fmt.Appendf(nil, "ca-%d", n) }

// newest is the highest n with a CA certificate in the token, 0 if none.
func (s tokenStore) newest() (int, error) {
	n := 0
	for {
		cert, err := s.token.FindCertificate(caID(n+1), []byte(s.label), nil)
		if err != nil {
			return 0, sdk.Errorf(sdk.CodeUnavailable, s.label, "look up CA certificate %s in the token: %v", caID(n+1), err)
		}
		if cert == nil {
			return n, nil
		}
		n++
	}
}

func (s tokenStore) load(n int) (*authority, error) {
	id := caID(n)
	cert, err := s.token.FindCertificate(id, []byte(s.label), nil)
	if err != nil || cert == nil {
		return nil, sdk.Errorf(sdk.CodeUnavailable, s.label, "CA certificate %s: %v", id, err)
	}
	key, err := s.token.FindKeyPair(id, []byte(s.label))
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeUnavailable, s.label, "CA key %s: %v", id, err)
	}
	if key == nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, s.label, "the token holds CA certificate %s but not its key", id)
	}
	if !certutil.SamePublicKey(cert.PublicKey, key.Public()) {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, s.label, "CA certificate %s is not for the key %s in the token", id, id)
	}
	return &authority{cert: cert, key: key, id: string(id)}, nil
}

// make generates CA n's key in the token (sensitive, never extractable: crypto11's
// template) and stores its self-signed certificate beside it.
func (s tokenStore) make(n int, name string, life time.Duration) (*authority, error) {
	id := caID(n)
	key, err := s.token.GenerateECDSAKeyPairWithLabel(id, []byte(s.label), elliptic.P256())
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeUnavailable, s.label, "generate CA key %s in the token: %v", id, err)
	}
	certPEM, err := certutil.NewCAForKey(name, life, key)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeUnavailable, s.label, "self-sign CA %s: %v", id, err)
	}
	certs, err := certutil.ParseCertificates(certPEM)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, s.label, "%v", err)
	}
	if err := s.token.ImportCertificateWithLabel(id, []byte(s.label), certs[0]); err != nil {
		return nil, sdk.Errorf(sdk.CodeUnavailable, s.label, "store CA certificate %s in the token: %v", id, err)
	}
	return &authority{cert: certs[0], key: key, id: string(id)}, nil
}
