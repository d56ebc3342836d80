package netlab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// Etcd is a cluster of Debian etcd members, one on each of some hosts, serving clients
// and peers over TLS with client certificates.
type Etcd struct {
	Endpoints                 []string // https://IP:2379 of each member
	CAFile, CertFile, KeyFile string   // a client's trust and identity
	Members                   map[int]*exec.Cmd
}

// StartEtcd starts one member on each of hosts (numbered from 1), with pre-vote on (see
// docs/SECURITY.md), its data and logs under dir. Clients reach it from the hosts only.
func (l *Lab) StartEtcd(dir string, hosts ...int) *Etcd {
	t := l.t
	t.Helper()
	if _, err := os.Stat(testservers.EtcdBinary); err != nil {
		t.Fatalf("%s: %v (scripts/install-deps.sh installs Debian's etcd-server)", testservers.EtcdBinary, err)
	}
	ca := pkitest.NewCA(t, "lab etcd CA", time.Now())
	write := func(name, pem string) string { return testservers.WriteFile(t, dir, name, pem) }
	e := &Etcd{CAFile: write("etcd-ca.pem", ca.PEM), Members: map[int]*exec.Cmd{}}
	clientKey := pkitest.NewKey(t)
	_, clientPEM := ca.Issue(t, clientKey.Public(), pkitest.Leaf{CN: "tlsrelay"})
	e.CertFile = write("etcd-client.pem", clientPEM)
	e.KeyFile = write("etcd-client-key.pem", string(pkitest.KeyPEM(t, clientKey)))
	var cluster []string
	for _, i := range hosts {
		ip := l.Hosts[i-1].IP
		cluster = append(cluster, fmt.Sprintf("m%d=https://%s:2380", i, ip))
		e.Endpoints = append(e.Endpoints, fmt.Sprintf("https://%s:2379", ip))
	}
	for _, i := range hosts {
		ip := l.Hosts[i-1].IP
		key := pkitest.NewKey(t)
		_, certPEM := ca.Issue(t, key.Public(), pkitest.Leaf{CN: fmt.Sprintf("m%d", i), IPs: []net.IP{net.ParseIP(ip)}})
		cert, keyFile := write(fmt.Sprintf("m%d.pem", i), certPEM), write(fmt.Sprintf("m%d-key.pem", i), string(pkitest.KeyPEM(t, key)))
		cmd := l.Command(i, testservers.EtcdBinary, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d.etcd", i)),
			"--listen-client-urls", "https://"+ip+":2379", "--advertise-client-urls", "https://"+ip+":2379",
			"--listen-peer-urls", "https://"+ip+":2380", "--initial-advertise-peer-urls", "https://"+ip+":2380",
			"--initial-cluster", strings.Join(cluster, ","), "--initial-cluster-state", "new", "--initial-cluster-token", l.prefix,
			"--cert-file", cert, "--key-file", keyFile, "--trusted-ca-file", e.CAFile, "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", keyFile, "--peer-trusted-ca-file", e.CAFile, "--peer-client-cert-auth",
			"--pre-vote", "--logger=zap", "--log-outputs=stderr", "--log-level=warn")
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		l.Start(cmd)
		log.Close()
		e.Members[i] = cmd
	}
	return e
}
