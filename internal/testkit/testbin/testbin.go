// Package testbin builds the project's binaries for tests that must run them as real
// child processes. Each binary is built once per test process.
package testbin

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The binaries tests run.
const (
	Tlsrelay    = "github.com/tlsrelay/tlsrelay/cmd/tlsrelay"
	CfsslPlugin = "github.com/tlsrelay/tlsrelay/plugins/cfssl/cmd/tlsrelay-plugin-cfssl"
	// Misbehave is a plugin that hangs, forks or reports its circumstances on purpose.
	Misbehave = "github.com/tlsrelay/tlsrelay/internal/testkit/testplugins/misbehave"
	// Pkcs11Plugin is the pkcs11 signer's plugin binary (cgo: crypto11).
	Pkcs11Plugin = "github.com/tlsrelay/tlsrelay/plugins/pkcs11/cmd/tlsrelay-plugin-pkcs11"
	// Custodian is a signer whose CA is shared or remote (it never moves between leaders).
	Custodian = "github.com/tlsrelay/tlsrelay/internal/testkit/testplugins/custodian"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{}
)

// Build returns the path of pkg's binary, building it on first use.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if path, ok := built[pkg]; ok {
		return path
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "tlsrelay-testbin-")
		if err != nil {
			tb.Fatal(err)
		}
		dir = d
	}
	path := filepath.Join(dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput()
	if err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = path
	return path
}

// Cleanup removes the built binaries; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// SHA256 returns the hex SHA-256 of a file.
func SHA256(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Main runs a package's tests and removes the binaries they built; call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}
