package openssl

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func configured(t *testing.T) *Backend {
	t.Helper()
	b := New(nil)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeTool is a script that answers `version` like another program would.
func fakeTool(t *testing.T, versionLine string) string {
	path := filepath.Join(t.TempDir(), "openssl")
	script := "#!/bin/sh\necho '" + versionLine + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigureChecksTheBinary(t *testing.T) {
	tests := []struct {
		name, binary string
		want         []string
	}{
		{"missing", "/nonexistent/openssl", []string{"config.openssl", "/nonexistent/openssl", "not found"}},
		{"too old", fakeTool(t, "OpenSSL 1.0.2k-fips  26 Jan 2017"), []string{"too old", "1.1.1"}},
		{"not OpenSSL", fakeTool(t, "LibreSSL 3.3.6"), []string{"is not OpenSSL", "LibreSSL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(nil).Configure(context.Background(), sdk.ConfigureRequest{
				ConfigJSON: []byte(`{"openssl":"` + tt.binary + `"}`), StateDir: t.TempDir()})
			if !sdk.IsCode(err, sdk.CodeFailedPrecondition) {
				t.Fatalf("err = %v, want failed precondition", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCommonNamesWithSeparators(t *testing.T) {
	b := configured(t)
	// The separators a common name may hold reach openssl's -subj as one attribute.
	for _, cn := range []string{"db/0", "svc_a:8443@zone*", "a.b-c d"} {
		csr, err := b.CreateCSR(context.Background(), sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: cn})
		if err != nil {
			t.Fatalf("%q: %v", cn, err)
		}
		req, err := certutil.ParseCSR(csr.CSRPEM, "")
		if err != nil || req.Subject.CommonName != cn || len(req.Subject.Names) != 1 {
			t.Errorf("CN %q came out as %q (%d attributes), err %v", cn, req.Subject.CommonName, len(req.Subject.Names), err)
		}
	}
	// Those that would make it several (and characters outside the set) never get there.
	for _, cn := range []string{"a+b", `back\slash`, "x=y", "a/CN=root", "ünïcode/7"} {
		_, err := b.CreateCSR(context.Background(), sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: cn})
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) {
			t.Errorf("CreateCSR with CN %q: err = %v, want invalid argument", cn, err)
		}
	}
}

func TestSANInjectionIsRefused(t *testing.T) {
	ctx := context.Background()
	b := configured(t)
	for _, san := range []string{"a,DNS:evil.example", "a\nbasicConstraints=critical,CA:TRUE", "a b"} {
		_, err := b.CreateCSR(ctx, sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: "db/0", SANs: []string{san}})
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) {
			t.Errorf("CreateCSR with SAN %q: err = %v, want invalid argument", san, err)
		}
	}
	// A CSR made elsewhere that carries such a name must not reach openssl's extension file.
	key := pkitest.NewKey(t)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "db/0"}, DNSNames: []string{"ok\nbasicConstraints=critical,CA:TRUE"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	_, err = b.SignCSR(ctx, sdk.SignRequest{CSRPEM: csrPEM, Profile: sdk.ProfilePeer, Unit: "db/0"})
	if !sdk.IsCode(err, sdk.CodeInvalidArgument) || !strings.Contains(err.Error(), "csr of db/0") {
		t.Fatalf("SignCSR of an injecting CSR: err = %v, want invalid argument naming the unit", err)
	}
}
