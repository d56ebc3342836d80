package builtin

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// TestEveryBackendSignsEveryBackendsCSR: keys and CSRs made by each built-in backend,
// signed by each (all pairs), verified with Go's x509 and with `openssl verify`.
func TestEveryBackendSignsEveryBackendsCSR(t *testing.T) {
	ctx := context.Background()
	backends := map[string]sdk.Backend{}
	var signers []string
	for _, name := range Names() {
		b := Backends[name](nil)
		if info, _ := b.Info(ctx); !info.Has(sdk.CapSignCSR) || !info.Has(sdk.CapCreateCSR) {
			continue
		}
		if err := b.Configure(ctx, sdk.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		backends[name] = b
		signers = append(signers, name)
	}
	if len(signers) != 3 {
		t.Fatalf("signing backends %v: want cfssl, easyrsa and openssl", signers)
	}
	for _, maker := range signers {
		csr, err := backends[maker].CreateCSR(ctx, sdk.CSRRequest{
			Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: "db/0", SANs: []string{"db-0", "127.0.0.1"}})
		if err != nil {
			t.Fatalf("%s CreateCSR: %v", maker, err)
		}
		for _, signer := range signers {
			t.Run(maker+" CSR signed by "+signer, func(t *testing.T) {
				chain, err := backends[signer].SignCSR(ctx, sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: sdk.ProfilePeer, Unit: "db/0"})
				if err != nil {
					t.Fatal(err)
				}
				ca, err := backends[signer].CA(ctx)
				if err != nil {
					t.Fatal(err)
				}
				verifyWithGo(t, chain.ChainPEM, ca.BundlePEM, csr.Key)
				verifyWithOpenSSL(t, chain.ChainPEM, ca.BundlePEM)
			})
		}
	}
}

func verifyWithGo(t *testing.T, chainPEM, caPEM []byte, keyPEM sdk.PrivateKey) {
	t.Helper()
	certs, err := certutil.ParseCertificates(chainPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "db-0",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("Go x509: %v", err)
	}
	pub, err := certutil.PublicKeyOfPrivatePEM(keyPEM)
	if err != nil || !certutil.SamePublicKey(pub, certs[0].PublicKey) {
		t.Errorf("the certificate is not for the maker's key (%v)", err)
	}
}

func verifyWithOpenSSL(t *testing.T, chainPEM, caPEM []byte) {
	t.Helper()
	dir := t.TempDir()
	crt, ca := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "ca.crt")
	os.WriteFile(crt, chainPEM, 0o644)
	os.WriteFile(ca, caPEM, 0o644)
	out, err := exec.Command("openssl", "verify", "-CAfile", ca, "-purpose", "sslserver", crt).CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), ": OK") {
		t.Errorf("openssl verify: %v: %s", err, out)
	}
}
