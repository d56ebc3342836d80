package testservers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// EtcdCluster is a cluster of real etcd members (Debian's etcd-server) on 127.0.0.1,
// serving clients and peers over TLS with client certificates, with pre-vote on (see
// docs/SECURITY.md). Members are numbered from 1; each can be killed, started again on
// its data, stopped and continued, by its pid.
type EtcdCluster struct {
	Endpoints                 []string // https://127.0.0.1:PORT of each member
	CAFile, CertFile, KeyFile string   // a client's trust and identity
	dir                       string
	args                      [][]string
	cmds                      []*exec.Cmd
}

// StartEtcdCluster starts an n-member cluster for one test, each member with the extra
// flags given; every member is killed when the test ends.
func StartEtcdCluster(t testing.TB, n int, extra ...string) *EtcdCluster {
	t.Helper()
	if _, err := os.Stat(EtcdBinary); err != nil {
		t.Fatalf("%s: %v (scripts/install-deps.sh installs Debian's etcd-server)", EtcdBinary, err)
	}
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "etcd cluster CA", time.Now())
	write := func(name, pem string) string { return WriteFile(t, dir, name, pem) }
	c := &EtcdCluster{dir: dir, CAFile: write("ca.pem", ca.PEM), cmds: make([]*exec.Cmd, n)}
	clientKey := pkitest.NewKey(t)
	_, clientPEM := ca.Issue(t, clientKey.Public(), pkitest.Leaf{CN: "tlsrelay"})
	c.CertFile = write("client.pem", clientPEM)
	c.KeyFile = write("client-key.pem", string(pkitest.KeyPEM(t, clientKey)))
	var peers, initial []string
	for i := 1; i <= n; i++ {
		c.Endpoints = append(c.Endpoints, fmt.Sprintf("https://127.0.0.1:%d", FreePort(t)))
		peers = append(peers, fmt.Sprintf("https://127.0.0.1:%d", FreePort(t)))
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i-1]))
	}
	for i := 1; i <= n; i++ {
		key := pkitest.NewKey(t)
		_, certPEM := ca.Issue(t, key.Public(), pkitest.Leaf{CN: fmt.Sprintf("m%d", i), IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		cert, keyFile := write(fmt.Sprintf("m%d.pem", i), certPEM), write(fmt.Sprintf("m%d-key.pem", i), string(pkitest.KeyPEM(t, key)))
		c.args = append(c.args, []string{"--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d.etcd", i)),
			"--listen-client-urls", c.Endpoints[i-1], "--advertise-client-urls", c.Endpoints[i-1],
			"--listen-peer-urls", peers[i-1], "--initial-advertise-peer-urls", peers[i-1],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--cert-file", cert, "--key-file", keyFile, "--trusted-ca-file", c.CAFile, "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", keyFile, "--peer-trusted-ca-file", c.CAFile, "--peer-client-cert-auth",
			"--pre-vote", "--logger=zap", "--log-outputs=stderr", "--log-level=warn"})
		c.args[i-1] = append(c.args[i-1], extra...)
	}
	t.Cleanup(func() {
		for i := range c.cmds {
			c.Kill(i + 1)
		}
	})
	for i := 1; i <= n; i++ {
		c.Start(t, i)
	}
	return c
}

// Start starts member i (again, on its data) and waits until it listens for clients.
func (c *EtcdCluster) Start(t testing.TB, i int) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("m%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(EtcdBinary, c.args[i-1]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.cmds[i-1] = cmd
	addr := strings.TrimPrefix(c.Endpoints[i-1], "https://")
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			t.Fatalf("etcd member %d did not listen on %s within 30 s; its log %s:\n%s", i, addr, log.Name(), out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill kills member i with SIGKILL, by its pid, and reaps it; Running says whether it runs.
func (c *EtcdCluster) Kill(i int) {
	if cmd := c.cmds[i-1]; cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
		c.cmds[i-1] = nil
	}
}

// Running says whether member i has a process (stopped or not).
func (c *EtcdCluster) Running(i int) bool { return c.cmds[i-1] != nil }

// Signal sends sig (SIGSTOP, SIGCONT) to member i, if it runs.
func (c *EtcdCluster) Signal(i int, sig syscall.Signal) {
	if cmd := c.cmds[i-1]; cmd != nil {
		cmd.Process.Signal(sig)
	}
}
