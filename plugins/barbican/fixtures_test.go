package barbican

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// material is a certificate, its key and an intermediate, in the forms operators store.
type material struct {
	cert, key, inter []byte // PEM, each with a trailing newline
	encryptedKey     []byte // key as PKCS#8 encrypted with passphrase (openssl pkcs8 -topk8)
	passphrase       []byte
	pkcs12           []byte // cert + key + inter, no password (openssl pkcs12 -export)
	otherKey         []byte // a key that belongs to no certificate here
}

func newMaterial(t *testing.T) material {
	t.Helper()
	root := pkitest.NewCA(t, "test root", time.Now())
	interKey := pkitest.NewKey(t)
	_, interPEM := root.Issue(t, interKey.Public(), pkitest.Leaf{CN: "test intermediate"})
	key := pkitest.NewKey(t)
	_, certPEM := root.Issue(t, key.Public(), pkitest.Leaf{CN: "listener-1.example", DNS: []string{"listener-1.example"}})
	m := material{cert: []byte(certPEM), key: pkitest.KeyPEM(t, key), inter: []byte(interPEM),
		passphrase: []byte("s3cret pass"), otherKey: pkitest.KeyPEM(t, pkitest.NewKey(t))}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile, certFile, interFile := write("key.pem", m.key), write("cert.pem", m.cert), write("inter.pem", m.inter)
	m.encryptedKey = runOpenSSL(t, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", keyFile, "-passout", "pass:"+string(m.passphrase))
	m.pkcs12 = runOpenSSL(t, "pkcs12", "-export", "-in", certFile, "-inkey", keyFile, "-certfile", interFile, "-passout", "pass:")
	return m
}

func runOpenSSL(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("openssl", args...).Output()
	if err != nil {
		t.Fatalf("openssl %v: %v", args, err)
	}
	return out
}

// raw talks to Barbican's REST API directly, to seed what the backend must then read.
type raw struct {
	t       *testing.T
	url     string
	project string
}

func (r raw) call(method, path string, body any) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.url+path, rd)
	req.Header.Set("X-Project-Id", r.project)
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

// secret stores a text secret and returns its ref.
func (r raw) secret(name string, payload []byte, secretType string) string {
	r.t.Helper()
	status, out := r.call("POST", "/v1/secrets", map[string]any{
		"name": name, "payload": string(payload), "payload_content_type": "text/plain", "secret_type": secretType})
	if status != 201 {
		r.t.Fatalf("store secret %s: HTTP %d %v", name, status, out)
	}
	return out["secret_ref"].(string)
}

// binary stores a binary secret (PKCS#12) and returns its ref.
func (r raw) binary(name string, payload []byte) string {
	r.t.Helper()
	status, out := r.call("POST", "/v1/secrets", map[string]any{
		"name": name, "payload": base64.StdEncoding.EncodeToString(payload), "secret_type": "opaque",
		"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"})
	if status != 201 {
		r.t.Fatalf("store binary secret %s: HTTP %d %v", name, status, out)
	}
	return out["secret_ref"].(string)
}

// container makes a certificate container over the named refs.
func (r raw) container(name string, refs map[string]string) string {
	r.t.Helper()
	var list []map[string]string
	for n, ref := range refs {
		list = append(list, map[string]string{"name": n, "secret_ref": ref})
	}
	status, out := r.call("POST", "/v1/containers", map[string]any{"type": "certificate", "name": name, "secret_refs": list})
	if status != 201 {
		r.t.Fatalf("create container %s: HTTP %d %v", name, status, out)
	}
	return out["container_ref"].(string)
}

func (r raw) count(kind string) int {
	r.t.Helper()
	_, out := r.call("GET", "/v1/"+kind+"?limit=100", nil)
	total, _ := out["total"].(float64)
	return int(total)
}

// noauth returns the backend configured for the unauthenticated Barbican at url.
func noauth(t *testing.T, url, project string, extra map[string]any) *Backend {
	t.Helper()
	cfg := map[string]any{"auth": map[string]any{"type": "noauth", "endpoint": url, "project_id": project}}
	for k, v := range extra {
		cfg[k] = v
	}
	raw, _ := json.Marshal(cfg)
	b := New(nil)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: raw}); err != nil {
		t.Fatal(err)
	}
	return b
}
