package testservers

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// Material is a certificate, its key and an intermediate, in the forms operators store
// in Barbican.
type Material struct {
	Cert, Key, Inter []byte // PEM, each with a trailing newline
	EncryptedKey     []byte // Key as PKCS#8 encrypted with Passphrase (openssl pkcs8 -topk8)
	Passphrase       []byte
	PKCS12           []byte // Cert + Key + Inter, no password (openssl pkcs12 -export)
	OtherKey         []byte // a key that belongs to no certificate here
}

// NewMaterial makes a CA, an intermediate and a leaf for listener-1.example, and the
// encrypted and PKCS#12 forms with the real openssl command.
func NewMaterial(t testing.TB) Material {
	t.Helper()
	root := pkitest.NewCA(t, "test root", time.Now())
	interKey := pkitest.NewKey(t)
	_, interPEM := root.Issue(t, interKey.Public(), pkitest.Leaf{CN: "test intermediate"})
	key := pkitest.NewKey(t)
	_, certPEM := root.Issue(t, key.Public(), pkitest.Leaf{CN: "listener-1.example", DNS: []string{"listener-1.example"}})
	m := Material{Cert: []byte(certPEM), Key: pkitest.KeyPEM(t, key), Inter: []byte(interPEM),
		Passphrase: []byte("s3cret pass"), OtherKey: pkitest.KeyPEM(t, pkitest.NewKey(t))}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile, certFile, interFile := write("key.pem", m.Key), write("cert.pem", m.Cert), write("inter.pem", m.Inter)
	m.EncryptedKey = openssl(t, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", keyFile, "-passout", "pass:"+string(m.Passphrase))
	m.PKCS12 = openssl(t, "pkcs12", "-export", "-in", certFile, "-inkey", keyFile, "-certfile", interFile, "-passout", "pass:")
	return m
}

func openssl(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("openssl", args...).Output()
	if err != nil {
		t.Fatalf("openssl %v: %v", args, err)
	}
	return out
}

// REST talks to an unauthenticated Barbican's API directly, as one project, to seed
// what the code under test must then read.
type REST struct {
	t       testing.TB
	URL     string
	Project string
}

// As returns a REST client for project.
func (b *Barbican) As(t testing.TB, project string) REST {
	return REST{t: t, URL: b.URL, Project: project}
}

// Call sends one request and decodes the JSON answer.
func (r REST) Call(method, path string, body any) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.URL+path, rd)
	req.Header.Set("X-Project-Id", r.Project)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// Secret stores a text secret and returns its ref.
func (r REST) Secret(name string, payload []byte, secretType string) string {
	r.t.Helper()
	status, out := r.Call("POST", "/v1/secrets", map[string]any{
		"name": name, "payload": string(payload), "payload_content_type": "text/plain", "secret_type": secretType})
	if status != 201 {
		r.t.Fatalf("store secret %s: HTTP %d %v", name, status, out)
	}
	return out["secret_ref"].(string)
}

// Binary stores a binary secret (PKCS#12) and returns its ref.
func (r REST) Binary(name string, payload []byte) string {
	r.t.Helper()
	status, out := r.Call("POST", "/v1/secrets", map[string]any{
		"name": name, "payload": base64.StdEncoding.EncodeToString(payload), "secret_type": "opaque",
		"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"})
	if status != 201 {
		r.t.Fatalf("store binary secret %s: HTTP %d %v", name, status, out)
	}
	return out["secret_ref"].(string)
}

// Container makes a certificate container over the named secret refs.
func (r REST) Container(name string, refs map[string]string) string {
	r.t.Helper()
	var list []map[string]string
	for n, ref := range refs {
		list = append(list, map[string]string{"name": n, "secret_ref": ref})
	}
	status, out := r.Call("POST", "/v1/containers", map[string]any{"type": "certificate", "name": name, "secret_refs": list})
	if status != 201 {
		r.t.Fatalf("create container %s: HTTP %d %v", name, status, out)
	}
	return out["container_ref"].(string)
}

// CertificateContainer stores cert and key (and intermediates when given) as a container.
func (r REST) CertificateContainer(name string, cert, key, inter []byte) string {
	refs := map[string]string{"certificate": r.Secret(name+"-cert", cert, "certificate")}
	if key != nil {
		refs["private_key"] = r.Secret(name+"-key", key, "private")
	}
	if inter != nil {
		refs["intermediates"] = r.Secret(name+"-inter", inter, "certificate")
	}
	return r.Container(name, refs)
}

// Count returns how many secrets or containers the project has.
func (r REST) Count(kind string) int {
	r.t.Helper()
	_, out := r.Call("GET", "/v1/"+kind+"?limit=100", nil)
	total, _ := out["total"].(float64)
	return int(total)
}
