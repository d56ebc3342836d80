package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// TestFetchAgainstRealBarbican runs `tlsrelay fetch` (the barbican backend as a plugin
// child process) against a real Barbican: the one-line summary and files on success,
// the precise reason and exit status on each failure.
func TestFetchAgainstRealBarbican(t *testing.T) {
	t.Parallel()
	server := testservers.StartBarbican(t)
	m := testservers.NewMaterial(t)
	demo := server.As(t, "demo")
	config := func(project string) string {
		path := filepath.Join(t.TempDir(), "tlsrelay.yaml")
		os.WriteFile(path, []byte(fmt.Sprintf(`roles: {secrets: barbican}
plugins:
  barbican:
    config:
      auth: {type: noauth, endpoint: %q, project_id: %q}
      retry_deadline: 2s
      timeout: 2s
`, server.URL, project)), 0o644)
		return path
	}
	good := demo.CertificateContainer("good", m.Cert, m.Key, m.Inter)

	t.Run("success", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "l1")
		r := run(t, "fetch", good, "--config", config("demo"), "--out", out)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], `subject "CN=listener-1.example"`) ||
			!strings.Contains(lines[0], "not after") || !strings.Contains(lines[0], filepath.Join(out, "tls.key")) {
			t.Fatalf("summary = %q", r.stdout)
		}
		key, _ := os.ReadFile(filepath.Join(out, "tls.key"))
		info, _ := os.Stat(filepath.Join(out, "tls.key"))
		if !bytes.Equal(key, m.Key) || info.Mode().Perm() != 0o600 {
			t.Fatalf("tls.key: mode %o, same bytes %v", info.Mode().Perm(), bytes.Equal(key, m.Key))
		}
		if strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
			t.Fatal("key material on the terminal")
		}
	})

	failures := []struct {
		name    string
		ref     string
		project string
		code    int
		want    string
	}{
		{"not found", server.URL + "/v1/containers/0b0e6cd8-0000-4000-8000-000000000000", "demo", 3, "not found"},
		{"another project's container", good, "other", 4, "permission denied"},
		{"a container without a key", demo.CertificateContainer("nokey", m.Cert, nil, nil), "demo", 6, "no private_key secret"},
		{"a key that does not match", demo.CertificateContainer("mismatch", m.Cert, m.OtherKey, nil), "demo", 6, "does not match the certificate"},
		{"a wrong passphrase", demo.Container("wrongpass", map[string]string{
			"certificate": demo.Secret("c", m.Cert, "certificate"), "private_key": demo.Secret("k", m.EncryptedKey, "private"),
			"private_key_passphrase": demo.Secret("p", []byte("nope"), "passphrase")}), "demo", 6, "passphrase does not decrypt"},
		{"not a reference", "https://example.com/v1/volumes/1", "demo", 6, "not a Barbican reference"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			r := run(t, "fetch", tt.ref, "--config", config(tt.project), "--out", out)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, tt.ref) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q and the ref)", r.code, tt.code, r.stderr, tt.want)
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Fatalf("a failed fetch wrote %v", entries)
			}
		})
	}

	t.Run("Barbican stopped", func(t *testing.T) {
		server.Stop(t)
		defer server.Start(t)
		r := run(t, "fetch", good, "--config", config("demo"))
		if r.code != 5 || !strings.Contains(r.stderr, "unavailable") || !strings.Contains(r.stderr, good) {
			t.Fatalf("exit %d (want 5), stderr %q", r.code, r.stderr)
		}
	})

	t.Run("no secrets backend configured", func(t *testing.T) {
		r := run(t, "fetch", good)
		if r.code != 7 || !strings.Contains(r.stderr, "set roles.secrets") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// Intermediates as Octavia takes them: a PKCS#7 bundle (`openssl crl2pkcs7`), as PEM and
// as DER, becomes chain.crt in PEM (it was refused: "no CERTIFICATE block in PEM", exit
// 6); and a fetch of a secret with no intermediates removes the chain.crt an earlier
// fetch into the same directory wrote (it was left in place while bundle.pem changed).
func TestFetchIntermediatesAsOctaviaStoresThem(t *testing.T) {
	t.Parallel()
	server := testservers.StartBarbican(t)
	m := testservers.NewMaterial(t)
	demo := server.As(t, "demo")
	dir := t.TempDir()
	interFile := filepath.Join(dir, "inter.pem")
	os.WriteFile(interFile, m.Inter, 0o644)
	p7pem, err := exec.Command("openssl", "crl2pkcs7", "-nocrl", "-certfile", interFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	p7der, err := exec.Command("openssl", "crl2pkcs7", "-nocrl", "-certfile", interFile, "-outform", "DER").Output()
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "tlsrelay.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf(`roles: {secrets: barbican}
plugins:
  barbican:
    config: {auth: {type: noauth, endpoint: %q, project_id: demo}, retry_deadline: 2s, timeout: 2s}
`, server.URL)), 0o644)
	cert, key := demo.Secret("c", m.Cert, "certificate"), demo.Secret("k", m.Key, "private")
	for name, inter := range map[string]string{
		"PKCS#7 PEM": demo.Secret("p7pem", p7pem, "certificate"),
		"PKCS#7 DER": demo.Binary("p7der", p7der),
	} {
		t.Run(name, func(t *testing.T) {
			ref := demo.Container(name, map[string]string{"certificate": cert, "private_key": key, "intermediates": inter})
			out := t.TempDir()
			if r := run(t, "fetch", ref, "--config", config, "--out", out); r.code != 0 {
				t.Fatalf("fetch: exit %d\n%s", r.code, r.stderr)
			}
			if chain := mustRead(t, filepath.Join(out, "chain.crt")); !bytes.Equal(bytes.TrimSpace(chain), bytes.TrimSpace(m.Inter)) {
				t.Fatalf("chain.crt is not the intermediate as PEM:\n%s", chain)
			}
		})
	}
	t.Run("no intermediates any more", func(t *testing.T) {
		out := t.TempDir()
		with := demo.CertificateContainer("with", m.Cert, m.Key, m.Inter)
		without := demo.CertificateContainer("without", m.Cert, m.Key, nil)
		if r := run(t, "fetch", with, "--config", config, "--out", out); r.code != 0 {
			t.Fatalf("fetch: exit %d\n%s", r.code, r.stderr)
		}
		r := run(t, "fetch", without, "--config", config, "--out", out)
		if r.code != 0 || !strings.Contains(r.stdout, "removed") {
			t.Fatalf("fetch without intermediates: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(out, "chain.crt")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the stale chain.crt is still there: %v", err)
		}
		if bytes.Contains(mustRead(t, filepath.Join(out, "bundle.pem")), bytes.TrimSpace(m.Inter)) {
			t.Fatal("bundle.pem still holds the old intermediate")
		}
	})
}

// tlsrelay store writes what Octavia reads by default, one PKCS#12 secret (or, by the
// barbican backend's store_format, a certificate container), and fetch reads it back:
// the same certificate, key and chain. A key that does not match is refused (exit 6)
// and nothing is stored.
func TestStoreThenFetch(t *testing.T) {
	t.Parallel()
	server := testservers.StartBarbican(t)
	m := testservers.NewMaterial(t)
	dir := t.TempDir()
	write := fileWriter(t, dir)
	cert, key, inter, other := write("cert.pem", string(m.Cert)), write("key.pem", string(m.Key)), write("inter.pem", string(m.Inter)), write("other.pem", string(m.OtherKey))
	for _, format := range []string{"pkcs12", "container"} {
		t.Run(format, func(t *testing.T) {
			config := write(format+".yaml", fmt.Sprintf(`roles: {secrets: barbican}
plugins:
  barbican:
    config: {auth: {type: noauth, endpoint: %q, project_id: demo}, retry_deadline: 2s, timeout: 2s, store_format: %s}
`, server.URL, format))
			r := run(t, "store", "listener-1", "--cert", cert, "--key", key, "--chain", inter, "--config", config)
			ref := strings.TrimSpace(r.stdout)
			wantKind := map[string]string{"pkcs12": "/v1/secrets/", "container": "/v1/containers/"}[format]
			if r.code != 0 || !strings.Contains(ref, wantKind) || strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
				t.Fatalf("store: exit %d, ref %q (want a %s ref)\n%s", r.code, ref, wantKind, r.stderr)
			}
			out := t.TempDir()
			if r := run(t, "fetch", ref, "--config", config, "--out", out); r.code != 0 {
				t.Fatalf("fetch of the stored %s: exit %d\n%s", format, r.code, r.stderr)
			}
			if !bytes.Equal(mustRead(t, filepath.Join(out, "tls.crt")), m.Cert) || !bytes.Equal(mustRead(t, filepath.Join(out, "chain.crt")), m.Inter) {
				t.Fatal("fetch gave another certificate or chain than was stored")
			}
			fetchedKey, err := tls.X509KeyPair(m.Cert, mustRead(t, filepath.Join(out, "tls.key")))
			if err != nil || fetchedKey.PrivateKey == nil {
				t.Fatalf("the fetched key is not the stored certificate's: %v", err)
			}
			before := server.As(t, "demo").Count("secrets")
			r = run(t, "store", "mismatch", "--cert", cert, "--key", other, "--config", config)
			if r.code != 6 || !strings.Contains(r.stderr, "does not match the certificate") {
				t.Fatalf("store of a key that does not match: exit %d\n%s", r.code, r.stderr)
			}
			if after := server.As(t, "demo").Count("secrets"); after != before {
				t.Fatalf("a refused store left %d secrets", after-before)
			}
		})
	}
}

// A secrets backend that cannot start (its auth missing) exits 7, one that cannot fetch
// at all exits 8, a config that does not load 7; each says why.
func TestFetchAndStoreExitWhenTheBackendCannot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := fileWriter(t, dir)("bad.yaml", "roles: {secrets: [oops\n")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"fetch", "ref", "--backend", "barbican"}, 7, "config.auth.type"},
		{[]string{"fetch", "ref", "--backend", "cfssl"}, 8, "it lacks fetch_secret"},
		{[]string{"fetch", "ref", "--config", bad}, 7, "bad.yaml"},
		{[]string{"store", "x", "--cert", bad, "--key", bad, "--backend", "openssl"}, 8, "cannot serve this role"},
	} {
		r := run(t, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d, want %d and %q:\n%s", tt.args, r.code, tt.code, tt.want, r.stderr)
		}
	}
}

// `tlsrelay fetch` with the file secrets backend writes what a file holds as it writes a
// Barbican container's parts; a file others may read exits 6 naming it, a missing one 3.
func TestFetchFromAFile(t *testing.T) {
	t.Parallel()
	m := testservers.NewMaterial(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "tlsrelay.yaml")
	os.WriteFile(config, []byte("roles: {secrets: file}\n"), 0o644)
	good, open := filepath.Join(dir, "listener.pem"), filepath.Join(dir, "open.pem")
	os.WriteFile(good, append(append(append([]byte{}, m.Cert...), m.Inter...), m.Key...), 0o600)
	os.WriteFile(open, append(append([]byte{}, m.Cert...), m.Key...), 0o644)
	os.Chmod(open, 0o644)

	out := filepath.Join(t.TempDir(), "l1")
	if r := run(t, "fetch", good, "--config", config, "--out", out); r.code != 0 || !strings.Contains(r.stdout, `subject "CN=listener-1.example"`) {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	key, _ := os.ReadFile(filepath.Join(out, "tls.key"))
	chain, _ := os.ReadFile(filepath.Join(out, "chain.crt"))
	if !bytes.Equal(key, m.Key) || !bytes.Equal(bytes.TrimSpace(chain), bytes.TrimSpace(m.Inter)) {
		t.Errorf("tls.key the file's key %v, chain.crt its intermediates %v", bytes.Equal(key, m.Key), bytes.Equal(chain, m.Inter))
	}
	for _, tt := range []struct {
		ref  string
		code int
		want string
	}{
		{open, 6, "has mode 0644"},
		{filepath.Join(dir, "missing.pem"), 3, "no such file"},
	} {
		if r := run(t, "fetch", tt.ref, "--config", config, "--out", t.TempDir()); r.code != tt.code || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, tt.ref) {
			t.Errorf("fetch %s: exit %d (want %d), stderr %q (want %q and the file)", tt.ref, r.code, tt.code, r.stderr, tt.want)
		}
	}
}
