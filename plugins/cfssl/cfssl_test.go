package cfssl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func configured(t *testing.T, dir string) *Backend {
	t.Helper()
	b := New(nil)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{StateDir: dir}); err != nil {
		t.Fatal(err)
	}
	return b
}

func leafOf(t *testing.T, chain []byte) *x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertificates(chain)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestCAPersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := configured(t, dir).CA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	again, err := configured(t, dir).CA(ctx) // a new process: a new Backend on the same dir
	if err != nil {
		t.Fatal(err)
	}
	if string(first.BundlePEM) != string(again.BundlePEM) {
		t.Fatal("restarted backend made a new CA instead of loading the stored one")
	}
}

func TestConcurrentFirstUseMakesOneCA(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	bundles := make([]string, 6)
	for i := range bundles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := configured(t, dir).CA(context.Background())
			if err != nil {
				t.Error(err)
			}
			bundles[i] = string(ca.BundlePEM)
		}()
	}
	wg.Wait()
	for _, b := range bundles[1:] {
		if b != bundles[0] {
			t.Fatal("backends sharing a directory created different CAs")
		}
	}
}

func TestSignHonoursProfileSANsAndValidity(t *testing.T) {
	ctx := context.Background()
	b := configured(t, t.TempDir())
	csr, err := b.CreateCSR(ctx, sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 384},
		CommonName: "db/0", SANs: []string{"db-0", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		profile sdk.Profile
		want    []x509.ExtKeyUsage
	}{
		{sdk.ProfileServer, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{sdk.ProfileClient, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{sdk.ProfilePeer, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	}
	for _, tt := range tests {
		t.Run(string(tt.profile), func(t *testing.T) {
			start := time.Now()
			chain, err := b.SignCSR(ctx, sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: tt.profile, Validity: 48 * time.Hour, Unit: "db/0"})
			if err != nil {
				t.Fatal(err)
			}
			cert := leafOf(t, chain.ChainPEM)
			if !slices.Equal(cert.ExtKeyUsage, tt.want) {
				t.Errorf("EKU = %v, want %v", cert.ExtKeyUsage, tt.want)
			}
			if cert.Subject.CommonName != "db/0" || !slices.Equal(cert.DNSNames, []string{"db-0"}) ||
				len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "127.0.0.1" {
				t.Errorf("names = %q %v %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
			}
			if life := cert.NotAfter.Sub(start); life < 47*time.Hour || life > 49*time.Hour {
				t.Errorf("lifetime from now = %v, want about 48h", life)
			}
		})
	}
}

func TestACSRAskingToBeACAGetsALeaf(t *testing.T) {
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bc, _ := asn1BasicConstraintsCA()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "db/0"},
		ExtraExtensions: []pkix.Extension{bc},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	chain, err := configured(t, t.TempDir()).SignCSR(ctx, sdk.SignRequest{CSRPEM: csrPEM, Profile: sdk.ProfilePeer, Unit: "db/0"})
	if err != nil {
		t.Fatal(err)
	}
	if cert := leafOf(t, chain.ChainPEM); cert.IsCA {
		t.Fatal("a unit's CSR obtained a CA certificate")
	}
}

func TestBadRequestsAreInvalidArgument(t *testing.T) {
	ctx := context.Background()
	b := configured(t, t.TempDir())
	for _, spec := range []sdk.KeySpec{{Algorithm: "ecdsa", Size: 521}, {Algorithm: "rsa", Size: 1024}, {Algorithm: "dsa", Size: 2048}, {Algorithm: "rsa", Size: 16384}} {
		if _, err := b.CreateCSR(ctx, sdk.CSRRequest{Key: spec, CommonName: "x"}); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
			t.Errorf("CreateCSR %v: err = %v, want invalid argument", spec, err)
		}
	}
	csr, _ := b.CreateCSR(ctx, sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "rsa", Size: 2048}, CommonName: "x"})
	if _, err := b.SignCSR(ctx, sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: "admin"}); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		t.Errorf("unknown profile: err = %v", err)
	}
	if _, err := b.SignCSR(ctx, sdk.SignRequest{CSRPEM: []byte("garbage"), Profile: sdk.ProfilePeer, Unit: "db/3"}); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		t.Errorf("garbage CSR: err = %v", err)
	}
	// The plugin leaves the signature to cfssl's signer: it must still refuse a bad one.
	block, _ := pem.Decode(csr.CSRPEM)
	block.Bytes[len(block.Bytes)-1] ^= 0xff
	tampered := pem.EncodeToMemory(block)
	if _, err := b.SignCSR(ctx, sdk.SignRequest{CSRPEM: tampered, Profile: sdk.ProfilePeer, Unit: "x"}); !sdk.IsCode(err, sdk.CodeInvalidArgument) || !strings.Contains(err.Error(), "CSR signature does not verify") {
		t.Errorf("CSR with a bad signature: err = %v, want invalid argument about its signature", err)
	}
	if err := New(nil).Configure(ctx, sdk.ConfigureRequest{ConfigJSON: []byte(`{"ca_validity":"forever"}`), StateDir: t.TempDir()}); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		t.Errorf("bad duration: err = %v", err)
	}
	if _, err := New(nil).CA(ctx); !sdk.IsCode(err, sdk.CodeFailedPrecondition) {
		t.Errorf("CA before Configure: err = %v", err)
	}
}
