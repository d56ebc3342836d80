package testservers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CfsslVersion is the cfssl whose `serve` the remote-signer tests run.
const CfsslVersion = "v1.6.5"

var cfsslBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tlsrelay-cfssl-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "install", "github.com/cloudflare/cfssl/cmd/cfssl@"+CfsslVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install cfssl %s: %v\n%s", CfsslVersion, err, out)
	}
	return filepath.Join(dir, "cfssl"), nil
})

// Cfssl is the cfssl binary, installed with go install into a temporary GOBIN once per
// test process. (It stays there for the process's other tests; the directory is
// under TMPDIR.)
func Cfssl(t testing.TB) string {
	t.Helper()
	bin, err := cfsslBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// CfsslServe runs `cfssl serve` on 127.0.0.1 with the CA in caFile and keyFile and
// profiles server, client and peer that sign for expiry, until the test ends (stopped
// by its pid). It returns the API's base URL once it answers.
func CfsslServe(t testing.TB, caFile, keyFile string, expiry time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// Only the key and the names come from a CSR: cfssl's key is "CSRWhitelist" (it
	// reads no "csr_whitelist"); without one it copies the CSR's subject and extensions.
	profile := func(usages string) string {
		return fmt.Sprintf(`{"expiry": %q, "usages": ["digital signature", "key encipherment", %s], `+
			`"CSRWhitelist": {"PublicKey": true, "PublicKeyAlgorithm": true, "SignatureAlgorithm": true, "DNSNames": true, "IPAddresses": true, "URIs": true}}`,
			expiry, usages)
	}
	cfg := filepath.Join(t.TempDir(), "cfssl.json")
	body := fmt.Sprintf(`{"signing": {"default": %s, "profiles": {"server": %s, "client": %s, "peer": %s}}}`,
		profile(`"server auth", "client auth"`), profile(`"server auth"`), profile(`"client auth"`), profile(`"server auth", "client auth"`))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Cfssl(t), "serve", "-address", "127.0.0.1", "-port", fmt.Sprint(port),
		"-ca", caFile, "-ca-key", keyFile, "-config", cfg, "-loglevel", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("cfssl serve did not listen on %s", url)
		}
	}
}
