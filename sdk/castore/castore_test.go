package castore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
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
