// Package testservers starts real OpenStack servers on 127.0.0.1 for tests, through the
// project's own scripts (scripts/barbican-server.sh, scripts/keystone-server.sh). The
// packages they need are installed by scripts/install-deps.sh.
package testservers

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Barbican is a running Barbican.
type Barbican struct {
	URL      string // http://127.0.0.1:PORT
	dir      string
	port     int
	keystone string // empty: no auth (X-Project-Id)
}

// StartBarbican starts an unauthenticated Barbican; it stops when the test ends.
func StartBarbican(t testing.TB) *Barbican {
	return startBarbican(t, "")
}

func startBarbican(t testing.TB, keystone string) *Barbican {
	t.Helper()
	b := &Barbican{dir: t.TempDir(), port: FreePort(t), keystone: keystone}
	b.URL = fmt.Sprintf("http://127.0.0.1:%d", b.port)
	b.Start(t)
	t.Cleanup(func() { b.Stop(t) })
	return b
}

// Start starts the server (again), on the same port and database.
func (b *Barbican) Start(t testing.TB) {
	t.Helper()
	args := []string{"start", b.dir, fmt.Sprint(b.port)}
	if b.keystone != "" {
		args = append(args, b.keystone)
	}
	script(t, "barbican-server.sh", args...)
}

// Stop stops the server; its data stays for a later Start.
func (b *Barbican) Stop(t testing.TB) {
	t.Helper()
	script(t, "barbican-server.sh", "stop", b.dir)
}

// Keystone is a running Keystone whose catalog lists a Barbican behind it.
type Keystone struct {
	AuthURL       string // http://127.0.0.1:PORT/v3
	AdminPassword string
	Barbican      *Barbican
}

// StartKeystone starts Keystone and a Barbican that requires its tokens, registered in
// its catalog as the key-manager endpoint.
func StartKeystone(t testing.TB) *Keystone {
	t.Helper()
	dir, port := t.TempDir(), FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	script(t, "keystone-server.sh", "start", dir, fmt.Sprint(port))
	t.Cleanup(func() { script(t, "keystone-server.sh", "stop", dir) })
	bPort := FreePort(t)
	script(t, "keystone-server.sh", "catalog", dir, fmt.Sprint(port), fmt.Sprintf("http://127.0.0.1:%d", bPort))
	b := &Barbican{dir: t.TempDir(), port: bPort, keystone: base}
	b.URL = fmt.Sprintf("http://127.0.0.1:%d", bPort)
	b.Start(t)
	t.Cleanup(func() { b.Stop(t) })
	return &Keystone{AuthURL: base + "/v3", AdminPassword: "adminpw", Barbican: b}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a server
// that is told its port before it starts. It is drawn below the kernel's ephemeral
// range (ip_local_port_range starts at 32768 by default), so no outgoing connection of
// a busy machine takes it as its own port between this call and the server's bind, and
// it is never handed out twice in one test binary; a port the kernel chose (":0", then
// released) had neither guarantee, and a parallel test's client could take it.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := firstPort + rand.IntN(ephemeralStart-firstPort)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // someone's; draw again
		}
		ln.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port on 127.0.0.1 in [%d, %d) after 1000 draws", firstPort, ephemeralStart)
	return 0
}

const firstPort, ephemeralStart = 10000, 32768

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func script(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "scripts", name), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// repoRoot is the directory holding go.mod, found upwards from the test's directory.
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
