package testservers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// EtcdBinary is Debian's etcd-server, installed by scripts/install-deps.sh.
const EtcdBinary = "/usr/bin/etcd"

// Etcd is a real etcd (Debian's etcd-server) on 127.0.0.1, serving TLS with client
// certificates. Kill and Start restart it on the same data directory.
type Etcd struct {
	Endpoint                  string // https://127.0.0.1:PORT
	CAFile, CertFile, KeyFile string // the client's trust and identity
	dir                       string
	clientPort, peerPort      int
	cmd                       *exec.Cmd
}

// StartEtcd starts an external etcd for one test; it is killed when the test ends.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	if _, err := os.Stat(EtcdBinary); err != nil {
		t.Fatalf("%s: %v (scripts/install-deps.sh installs Debian's etcd-server)", EtcdBinary, err)
	}
	dir := t.TempDir()
	e := &Etcd{dir: dir, clientPort: FreePort(t), peerPort: FreePort(t)}
	e.Endpoint = fmt.Sprintf("https://127.0.0.1:%d", e.clientPort)
	ca := pkitest.NewCA(t, "etcd test CA", time.Now())
	write := func(name, pem string) string { return WriteFile(t, dir, name, pem) }
	e.CAFile = write("ca.pem", ca.PEM)
	serverKey, clientKey := pkitest.NewKey(t), pkitest.NewKey(t)
	_, serverPEM := ca.Issue(t, serverKey.Public(), pkitest.Leaf{CN: "etcd", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNS: []string{"localhost"}})
	_, clientPEM := ca.Issue(t, clientKey.Public(), pkitest.Leaf{CN: "tlsrelay"})
	write("server.pem", serverPEM)
	write("server-key.pem", string(pkitest.KeyPEM(t, serverKey)))
	e.CertFile = write("client.pem", clientPEM)
	e.KeyFile = write("client-key.pem", string(pkitest.KeyPEM(t, clientKey)))
	e.Start(t)
	t.Cleanup(e.Kill)
	return e
}

// Start starts the server (again) and waits until it answers.
func (e *Etcd) Start(t testing.TB) {
	t.Helper()
	peer := fmt.Sprintf("http://127.0.0.1:%d", e.peerPort)
	cmd := exec.Command(EtcdBinary, "--name", "test", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.Endpoint, "--advertise-client-urls", e.Endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer, "--initial-cluster-state", "new",
		"--cert-file", filepath.Join(e.dir, "server.pem"), "--key-file", filepath.Join(e.dir, "server-key.pem"),
		"--client-cert-auth", "--trusted-ca-file", e.CAFile,
		"--logger=zap", "--log-outputs=stderr", "--log-level=error")
	log, err := os.OpenFile(filepath.Join(e.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", e.clientPort), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(e.dir, "etcd.log"))
			t.Fatalf("etcd did not listen within 30 s:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL, by its pid, and reaps it.
func (e *Etcd) Kill() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	e.cmd.Wait()
	e.cmd = nil
}

// WriteFile writes content to dir/name, mode 0600 (keys among them), and returns its path.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
