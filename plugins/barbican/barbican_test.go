package barbican

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// TestAgainstRealBarbican runs every fetch, store and error case against one real
// Barbican server (Debian python3-barbican, unauthenticated pipeline).
func TestAgainstRealBarbican(t *testing.T) {
	server := testservers.StartBarbican(t)
	m := testservers.NewMaterial(t)
	demo := server.As(t, "demo")
	b := noauth(t, server.URL, "demo", nil)
	ctx := context.Background()

	full := demo.Container("full", map[string]string{
		refCertificate:   demo.Secret("cert", m.Cert, "certificate"),
		refPrivateKey:    demo.Secret("key", m.Key, "private"),
		refIntermediates: demo.Secret("inter", m.Inter, "certificate"),
	})

	t.Run("a container comes back byte for byte", func(t *testing.T) {
		s, err := b.FetchSecret(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		// Barbican strips the trailing newline of text payloads; the backend restores it.
		for _, c := range []struct{ name, got, want []byte }{
			{[]byte("certificate"), s.CertificatePEM, m.Cert}, {[]byte("key"), s.Key, m.Key}, {[]byte("intermediates"), s.IntermediatesPEM, m.Inter},
		} {
			if !bytes.Equal(c.got, c.want) {
				t.Errorf("%s differs:\n got %q\nwant %q", c.name, c.got, c.want)
			}
		}
	})

	t.Run("a PKCS#12 secret", func(t *testing.T) {
		s, err := b.FetchSecret(ctx, demo.Binary("p12", m.PKCS12))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s.CertificatePEM, m.Cert) || !bytes.Equal(s.IntermediatesPEM, m.Inter) {
			t.Errorf("PKCS#12 certificate or chain differs:\n%s\n%s", s.CertificatePEM, s.IntermediatesPEM)
		}
		if !sameKeyDER(t, s.Key, m.Key) {
			t.Error("PKCS#12 key differs from the key it was made from")
		}
	})

	t.Run("a PEM bundle secret", func(t *testing.T) {
		bundle := append(append(append([]byte{}, m.Cert...), m.Inter...), m.Key...)
		s, err := b.FetchSecret(ctx, demo.Secret("bundle", bundle, "opaque"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s.CertificatePEM, m.Cert) || !bytes.Equal(s.IntermediatesPEM, m.Inter) || !bytes.Equal(s.Key, m.Key) {
			t.Error("PEM bundle parts differ")
		}
	})

	t.Run("an encrypted key is decrypted with the container's passphrase", func(t *testing.T) {
		ref := demo.Container("encrypted", map[string]string{
			refCertificate: demo.Secret("cert", m.Cert, "certificate"),
			refPrivateKey:  demo.Secret("enc-key", m.EncryptedKey, "private"),
			refPassphrase:  demo.Secret("pass", m.Passphrase, "passphrase"),
		})
		s, err := b.FetchSecret(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(s.Key), "ENCRYPTED") || !sameKeyDER(t, s.Key, m.Key) {
			t.Fatalf("key not decrypted to the original:\n%s", s.Key)
		}
	})

	containerStore := noauth(t, server.URL, "demo", map[string]any{"store_format": StoreContainer})
	for format, b := range map[string]*Backend{"pkcs12 (the default)": b, "container": containerStore} {
		t.Run("store, fetch, delete, delete again, as "+format, func(t *testing.T) {
			secretsBefore := demo.Count("secrets")
			ref, err := b.StoreSecret(ctx, "stored", sdk.Secret{CertificatePEM: m.Cert, Key: m.Key, IntermediatesPEM: m.Inter})
			if err != nil {
				t.Fatal(err)
			}
			if isPKCS12 := strings.Contains(ref, "/v1/secrets/"); isPKCS12 != (b != containerStore) {
				t.Fatalf("stored as %s, want %s", ref, format)
			}
			s, err := b.FetchSecret(ctx, ref)
			if err != nil || !bytes.Equal(s.CertificatePEM, m.Cert) || !sameKeyDER(t, s.Key, m.Key) || !bytes.Equal(s.IntermediatesPEM, m.Inter) {
				t.Fatalf("fetch after store: %v", err)
			}
			if err := b.DeleteSecret(ctx, ref); err != nil {
				t.Fatal(err)
			}
			if err := b.DeleteSecret(ctx, ref); err != nil {
				t.Fatalf("second delete: %v, want nil (already gone is not an error)", err)
			}
			if _, err := b.FetchSecret(ctx, ref); !sdk.IsCode(err, sdk.CodeNotFound) {
				t.Fatalf("fetch after delete: %v, want not found", err)
			}
			if after := demo.Count("secrets"); after != secretsBefore {
				t.Fatalf("secrets in project: %d before, %d after store+delete", secretsBefore, after)
			}
		})
	}

	t.Run("a failed store leaves nothing behind", func(t *testing.T) {
		before := demo.Count("secrets")
		// The certificate and key are stored; the intermediates, valid but over
		// Barbican's 20,000-byte secret limit, are refused; the two must be rolled back.
		huge := bytes.Repeat(m.Inter, 60)
		_, err := containerStore.StoreSecret(ctx, "too-big", sdk.Secret{CertificatePEM: m.Cert, Key: m.Key, IntermediatesPEM: huge})
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) || !strings.Contains(err.Error(), "intermediates") {
			t.Fatalf("store of oversized intermediates: %v, want invalid argument naming them", err)
		}
		if after := demo.Count("secrets"); after != before {
			t.Fatalf("secrets in project: %d before, %d after a failed store", before, after)
		}
	})

	errorCases := []struct {
		name    string
		backend *Backend
		ref     string
		code    sdk.Code
		want    []string
	}{
		{"404 names the reference", b, server.URL + "/v1/containers/0b0e6cd8-0000-4000-8000-000000000000",
			sdk.CodeNotFound, []string{"/v1/containers/0b0e6cd8-0000-4000-8000-000000000000", "Not Found"}},
		{"403 for another project's container", noauth(t, server.URL, "other", nil), full,
			sdk.CodePermissionDenied, []string{full, "Forbidden"}},
		{"a container without a key", b, demo.Container("nokey", map[string]string{refCertificate: demo.Secret("c", m.Cert, "certificate")}),
			sdk.CodeInvalidArgument, []string{"no private_key secret"}},
		{"a key that does not match the certificate", b, demo.Container("mismatch", map[string]string{
			refCertificate: demo.Secret("c", m.Cert, "certificate"), refPrivateKey: demo.Secret("k", m.OtherKey, "private")}),
			sdk.CodeInvalidArgument, []string{"does not match the certificate", "listener-1.example"}},
		{"a wrong passphrase", b, demo.Container("wrongpass", map[string]string{
			refCertificate: demo.Secret("c", m.Cert, "certificate"), refPrivateKey: demo.Secret("k", m.EncryptedKey, "private"),
			refPassphrase: demo.Secret("p", []byte("not it"), "passphrase")}),
			sdk.CodeInvalidArgument, []string{"private_key_passphrase does not decrypt"}},
		{"an unreadable certificate payload", b, demo.Container("garbage", map[string]string{
			refCertificate: demo.Secret("c", []byte("not a certificate"), "certificate"), refPrivateKey: demo.Secret("k", m.Key, "private")}),
			sdk.CodeInvalidArgument, []string{"certificate secret is unreadable"}},
		{"not a Barbican reference", b, "https://example.com/v1/volumes/1", sdk.CodeInvalidArgument, []string{"not a Barbican reference"}},
	}
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.backend.FetchSecret(ctx, tt.ref)
			var e *sdk.Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
			if !strings.Contains(err.Error(), tt.ref) {
				t.Errorf("error %q does not name the reference", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	t.Run("a consumer is registered on fetch", func(t *testing.T) {
		withConsumer := noauth(t, server.URL, "demo", map[string]any{"consumer": map[string]any{"name": "tlsrelay", "url": "https://lb.example/1"}})
		if _, err := withConsumer.FetchSecret(ctx, full); err != nil {
			t.Fatal(err)
		}
		_, out := demo.Call("GET", strings.TrimPrefix(full, server.URL)+"/consumers", nil)
		if consumers, _ := out["consumers"].([]any); len(consumers) != 1 {
			t.Fatalf("consumers = %v, want one", out)
		}
	})
}

func sameKeyDER(t *testing.T, a, b []byte) bool {
	t.Helper()
	parse := func(p []byte) []byte {
		block, _ := pem.Decode(p)
		if block == nil {
			t.Fatalf("not PEM: %q", p)
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		return der
	}
	return bytes.Equal(parse(a), parse(b))
}

// TestBarbicanStoppedMidRun: while Barbican is down a fetch is Unavailable, a fetch
// that outlasts the outage succeeds, and so does one after the restart.
func TestBarbicanStoppedMidRun(t *testing.T) {
	server := testservers.StartBarbican(t)
	m := testservers.NewMaterial(t)
	ctx := context.Background()
	demo := server.As(t, "demo")
	ref := demo.Container("c", map[string]string{
		refCertificate: demo.Secret("cert", m.Cert, "certificate"), refPrivateKey: demo.Secret("key", m.Key, "private")})
	impatient := noauth(t, server.URL, "demo", map[string]any{"retry_deadline": "1s", "timeout": "1s"})
	patient := noauth(t, server.URL, "demo", map[string]any{"retry_deadline": "60s", "timeout": "2s"})
	if _, err := impatient.FetchSecret(ctx, ref); err != nil {
		t.Fatal(err)
	}

	server.Stop(t)
	start := time.Now()
	_, err := impatient.FetchSecret(ctx, ref)
	if !sdk.IsCode(err, sdk.CodeUnavailable) || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("fetch while stopped: %v, want unavailable naming the ref", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a 1s retry deadline took %s", took)
	}

	done := make(chan error, 1)
	go func() { _, err := patient.FetchSecret(ctx, ref); done <- err }()
	time.Sleep(1500 * time.Millisecond) // the patient fetch is retrying now
	server.Start(t)
	if err := <-done; err != nil {
		t.Fatalf("a fetch retrying through the restart: %v", err)
	}
	if s, err := impatient.FetchSecret(ctx, ref); err != nil || !bytes.Equal(s.CertificatePEM, m.Cert) {
		t.Fatalf("fetch after restart: %v", err)
	}
}
