package netlab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// Etcd is a cluster of Debian etcd members, one on each of some hosts, serving clients
// and peers over TLS with client certificates. Each member can be killed, started again
// on its data, stopped and continued, by its pid.
type Etcd struct {
	Endpoints                 []string // where a client reaches each member
	CAFile, CertFile, KeyFile string   // a client's trust and identity
	lab                       *Lab
	dir                       string
	hosts                     []int
	args                      map[int][]string
	members                   map[int]*exec.Cmd
}

// StartEtcd starts one member on each of hosts (numbered from 1), with pre-vote on (see
// docs/SECURITY.md), its data and logs under dir. Clients reach it from the hosts only,
// at https://IP:2379.
func (l *Lab) StartEtcd(dir string, hosts ...int) *Etcd {
	l.t.Helper()
	e := l.newEtcd(dir, hosts)
	for _, i := range hosts {
		e.Endpoints = append(e.Endpoints, fmt.Sprintf("https://%s:2379", l.Hosts[i-1].IP))
	}
	for _, i := range hosts {
		e.Start(i)
	}
	return e
}

// StartEtcdOnLoopback starts the cluster StartEtcd does, and forwards a port on the
// test's own 127.0.0.1 to each member's client port, so that processes outside the lab
// are its clients while the members' peer traffic crosses the lab, where IsolateMember
// can cut it. Cutting a host cuts its member from its peers, not from its clients.
func (l *Lab) StartEtcdOnLoopback(dir string, hosts ...int) *Etcd {
	l.t.Helper()
	e := l.newEtcd(dir, hosts)
	for _, i := range hosts {
		e.Endpoints = append(e.Endpoints, "https://"+l.Forward(i, l.Hosts[i-1].IP+":2379"))
	}
	for _, i := range hosts {
		e.Start(i)
	}
	return e
}

// newEtcd makes the cluster's certificates and each member's command line.
func (l *Lab) newEtcd(dir string, hosts []int) *Etcd {
	t := l.t
	t.Helper()
	if _, err := os.Stat(testservers.EtcdBinary); err != nil {
		t.Fatalf("%s: %v (scripts/install-deps.sh installs Debian's etcd-server)", testservers.EtcdBinary, err)
	}
	ca := pkitest.NewCA(t, "lab etcd CA", time.Now())
	write := func(name, pem string) string { return testservers.WriteFile(t, dir, name, pem) }
	e := &Etcd{lab: l, dir: dir, hosts: hosts, CAFile: write("etcd-ca.pem", ca.PEM), args: map[int][]string{}, members: map[int]*exec.Cmd{}}
	clientKey := pkitest.NewKey(t)
	_, clientPEM := ca.Issue(t, clientKey.Public(), pkitest.Leaf{CN: "tlsrelay"})
	e.CertFile = write("etcd-client.pem", clientPEM)
	e.KeyFile = write("etcd-client-key.pem", string(pkitest.KeyPEM(t, clientKey)))
	var cluster []string
	for _, i := range hosts {
		cluster = append(cluster, fmt.Sprintf("m%d=https://%s:2380", i, l.Hosts[i-1].IP))
	}
	for _, i := range hosts {
		ip := l.Hosts[i-1].IP
		key := pkitest.NewKey(t)
		// 127.0.0.1 too: a client outside the lab reaches the member through a forward.
		_, certPEM := ca.Issue(t, key.Public(), pkitest.Leaf{CN: fmt.Sprintf("m%d", i), IPs: []net.IP{net.ParseIP(ip), net.IPv4(127, 0, 0, 1)}})
		cert, keyFile := write(fmt.Sprintf("m%d.pem", i), certPEM), write(fmt.Sprintf("m%d-key.pem", i), string(pkitest.KeyPEM(t, key)))
		e.args[i] = []string{testservers.EtcdBinary, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d.etcd", i)),
			"--listen-client-urls", "https://" + ip + ":2379", "--advertise-client-urls", "https://" + ip + ":2379",
			"--listen-peer-urls", "https://" + ip + ":2380", "--initial-advertise-peer-urls", "https://" + ip + ":2380",
			"--initial-cluster", strings.Join(cluster, ","), "--initial-cluster-state", "new", "--initial-cluster-token", l.prefix,
			"--cert-file", cert, "--key-file", keyFile, "--trusted-ca-file", e.CAFile, "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", keyFile, "--peer-trusted-ca-file", e.CAFile, "--peer-client-cert-auth",
			"--pre-vote", "--logger=zap", "--log-outputs=stderr", "--log-level=warn"}
	}
	return e
}

// Start starts member i (again, on its data) and waits until it listens for clients.
func (e *Etcd) Start(i int) {
	t := e.lab.t
	t.Helper()
	name := filepath.Join(e.dir, fmt.Sprintf("m%d.log", i))
	log, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := e.lab.Command(i, e.args[i][0], e.args[i][1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	e.lab.Start(cmd)
	e.members[i] = cmd
	addr := e.lab.Hosts[i-1].IP + ":2379"
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := e.lab.Dial(i, addr)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(name)
			t.Fatalf("etcd member %d did not listen on %s within 30 s (%v); its log %s:\n%s", i, addr, err, name, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill kills member i with SIGKILL, by its pid, and reaps it.
func (e *Etcd) Kill(i int) {
	if cmd := e.members[i]; cmd != nil {
		e.lab.Kill(cmd, syscall.SIGKILL)
		e.members[i] = nil
	}
}

// Running says whether member i has a process (stopped or not).
func (e *Etcd) Running(i int) bool { return e.members[i] != nil }

// Signal sends sig (SIGSTOP, SIGCONT) to member i, if it runs.
func (e *Etcd) Signal(i int, sig syscall.Signal) {
	if cmd := e.members[i]; cmd != nil {
		e.lab.Kill(cmd, sig)
	}
}
