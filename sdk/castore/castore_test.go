package castore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func TestCreatesOnceAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	var creates atomic.Int32
	create := func() (CA, error) {
		creates.Add(1)
		return CA{CertPEM: []byte("cert"), KeyPEM: []byte("key")}, nil
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, _, err := LoadOrCreate(dir, create)
			if err != nil || string(ca.CertPEM) != "cert" || string(ca.KeyPEM) != "key" {
				t.Errorf("LoadOrCreate = %q %q %v", ca.CertPEM, ca.KeyPEM, err)
			}
		}()
	}
	wg.Wait()
	if n := creates.Load(); n != 1 {
		t.Fatalf("created %d times, want once", n)
	}
	_, keyPath := Paths(dir)
	if info, err := os.Stat(keyPath); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v mode %v", err, info.Mode().Perm())
	}
}

func TestCertificateWithoutKeyIsAnError(t *testing.T) {
	dir := t.TempDir()
	certPath, _ := Paths(dir)
	os.WriteFile(certPath, []byte("cert"), 0o644)
	_, _, err := LoadOrCreate(dir, func() (CA, error) { return CA{}, errors.New("must not create") })
	if err == nil || !strings.Contains(err.Error(), "its key cannot be read") {
		t.Fatalf("err = %v", err)
	}
}

// A CA whose key is held elsewhere (an HSM's) is kept as its certificate and a
// reference to the key: loaded as such, never parsed as a key or exported, and a CA with
// a PEM key stored over it removes the reference (and the other way round).
func TestCAWithAKeyHeldElsewhere(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	certPEM, keyPEM, err := certutil.NewCA("token CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "pkcs11:token=tlsrelay;object=tlsrelay-ca;id=ca-1"
	if err := Replace(dir, CA{CertPEM: certPEM, KeyRef: ref}); err != nil {
		t.Fatal(err)
	}
	ca, err := Load(dir)
	if err != nil || ca.KeyRef != ref || len(ca.KeyPEM) != 0 {
		t.Fatalf("Load = %+v, %v; want the reference and no key", ca, err)
	}
	if cert, err := ca.Certificate(); err != nil || cert.Subject.CommonName != "token CA" {
		t.Fatalf("Certificate = %v, %v", cert, err)
	}
	if _, _, err := ca.Parse(); err == nil || !strings.Contains(err.Error(), "held elsewhere") {
		t.Fatalf("Parse of a CA whose key is elsewhere: %v", err)
	}
	if _, err := ExportCA(dir); !sdk.IsCode(err, sdk.CodeFailedPrecondition) {
		t.Fatalf("ExportCA: %v, want FailedPrecondition", err)
	}
	if err := Replace(dir, CA{CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
		t.Fatal(err)
	}
	if ca, err := Load(dir); err != nil || ca.KeyRef != "" || len(ca.KeyPEM) == 0 {
		t.Fatalf("after a PEM key replaced the reference: %+v, %v", ca, err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyRefFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the stale reference is still there: %v", err)
	}
	if err := Replace(dir, CA{CertPEM: certPEM}); err == nil {
		t.Fatal("a CA with neither a key nor a reference was stored")
	}
}
