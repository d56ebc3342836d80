package easyrsa

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func configured(t *testing.T, stateDir string) *Backend {
	t.Helper()
	b := New(nil)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{StateDir: stateDir}); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExportedEasyRSAVariablesDoNotLeak(t *testing.T) {
	t.Setenv("EASYRSA_REQ_CN", "leaked")
	t.Setenv("EASYRSA_PKI", filepath.Join(t.TempDir(), "elsewhere"))
	t.Setenv("EASYRSA_CERT_EXPIRE", "1")
	ctx := context.Background()
	b := configured(t, t.TempDir())
	csr, err := b.CreateCSR(ctx, sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: "db/0", SANs: []string{"db-0"}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := certutil.ParseCSR(csr.CSRPEM, "")
	if req.Subject.CommonName != "db/0" {
		t.Fatalf("CSR common name %q: the exported EASYRSA_REQ_CN leaked in", req.Subject.CommonName)
	}
	ca, err := b.CA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := certutil.ParseCertificates(ca.BundlePEM)
	if caCert[0].Subject.CommonName != "tlsrelay easyrsa CA" {
		t.Fatalf("CA common name %q", caCert[0].Subject.CommonName)
	}
	chain, err := b.SignCSR(ctx, sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: sdk.ProfilePeer, Validity: 10 * 24 * 3600e9, Unit: "db/0"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := certutil.ParseCertificates(chain.ChainPEM)
	if days := leaf[0].NotAfter.Sub(leaf[0].NotBefore).Hours() / 24; days < 9.9 {
		t.Fatalf("certificate lasts %.1f days: the exported EASYRSA_CERT_EXPIRE leaked in", days)
	}
	if _, err := os.Stat(os.Getenv("EASYRSA_PKI")); err == nil {
		t.Fatal("the exported EASYRSA_PKI was used")
	}
}

// Two backends on one PKI stand for two plugin processes (a leader change on one host):
// their signing runs must not interleave in easy-rsa's index.
func TestSharedPKIStaysConsistent(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	a, b := configured(t, state), configured(t, state)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		backend := a
		if i%2 == 1 {
			backend = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			csr := pkitest.CSR(t, pkitest.NewKey(t), "db/1", "db-1")
			_, err := backend.SignCSR(ctx, sdk.SignRequest{CSRPEM: []byte(csr), Profile: sdk.ProfileServer, Unit: "db/1"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	index, err := os.ReadFile(filepath.Join(state, "pki", "index.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(index)), "\n")
	serials := map[string]bool{}
	for _, line := range lines {
		fields := strings.Split(line, "\t")
		if len(fields) < 4 || fields[0] != "V" {
			t.Fatalf("corrupt index line %q", line)
		}
		serials[fields[3]] = true
	}
	if len(lines) != 12 || len(serials) != 12 {
		t.Fatalf("index has %d lines, %d serials; want 12 of each", len(lines), len(serials))
	}
	leftovers, _ := filepath.Glob(filepath.Join(state, "pki", "reqs", "*"))
	if len(leftovers) != 0 {
		t.Fatalf("requests left behind: %v", leftovers)
	}
}

func TestConfigureChecksTheScript(t *testing.T) {
	old := filepath.Join(t.TempDir(), "easyrsa")
	os.WriteFile(old, []byte("#!/bin/sh\necho 'EasyRSA Version Information'\necho 'Version:     3.0.8'\n"), 0o755)
	for _, tt := range []struct {
		path string
		want string
	}{
		{"/nonexistent/easyrsa", "not found"},
		{old, "3.0.8 is not supported"},
	} {
		err := New(nil).Configure(context.Background(), sdk.ConfigureRequest{
			ConfigJSON: []byte(`{"easyrsa":"` + tt.path + `"}`), StateDir: t.TempDir()})
		if !sdk.IsCode(err, sdk.CodeFailedPrecondition) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("easyrsa %s: err = %v, want failed precondition containing %q", tt.path, err, tt.want)
		}
	}
}

func TestRequestNamesAreSafeAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, unit := range []string{"db/0", "db/0", "../../etc/passwd", "", "ünï code"} {
		name, err := requestName(unit)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(name, "/ ") || strings.Contains(name, "..") && strings.Contains(name, "/") || seen[name] {
			t.Errorf("requestName(%q) = %q", unit, name)
		}
		seen[name] = true
	}
}
