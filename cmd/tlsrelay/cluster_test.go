package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/internal/app/etcdaccess"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// The Octavia shape on Debian's etcd-server, over TLS, with etcd's RBAC set up by
// `tlsrelay etcd bootstrap`: two controllers may lead, amphorae only ask, each agent
// with its own etcd user. Then etcd is killed with -9 under the running group and
// restarted: the agents reconnect and converge, nothing is lost (same CA, every unit
// keeps its certificate), and a unit added afterwards is signed.
func TestGroupOnExternalEtcdWithRBACSurvivesEtcdKill(t *testing.T) {
	t.Parallel()
	srv := testservers.StartEtcd(t)
	const rel, ttl = "lb", 2 * time.Second
	ag := newAgentsWith(t, fmt.Sprintf(`relation:
  name: %s
  store: etcd
  etcd:
    endpoints: [%q]
    tls: {ca_file: %q, cert_file: %q, key_file: %q}
    lease_ttl: %s
`, rel, srv.Endpoint, srv.CAFile, srv.CertFile, srv.KeyFile, ttl), true)
	creds := filepath.Join(ag.dir, "credentials")
	rootFile := filepath.Join(ag.dir, "root.password")
	if err := os.WriteFile(rootFile, []byte("root-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bootstrap := func(members string, extra ...string) {
		t.Helper()
		args := append([]string{"etcd", "bootstrap", "--config", ag.config, "--leader-eligible", "ctl/0,ctl/1",
			"--members", members, "--credentials-dir", creds, "--root-password-file", rootFile}, extra...)
		r := runBinary(t, ag.bin, args...)
		if r.code != 0 {
			t.Fatalf("etcd bootstrap exited %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, etcd.UserName(rel, "amp/0")) {
			t.Errorf("bootstrap does not report amp/0's user:\n%s", r.stdout)
		}
	}
	// Auth off and no --enable-auth: refused, saying why.
	if r := runBinary(t, ag.bin, "etcd", "bootstrap", "--config", ag.config, "--members", "amp/0",
		"--credentials-dir", creds, "--root-password-file", rootFile); r.code == 0 || !strings.Contains(r.stderr, "--enable-auth") {
		t.Fatalf("bootstrap on a cluster without auth: exit %d, stderr %q; want a refusal naming --enable-auth", r.code, r.stderr)
	}
	bootstrap("amp/0,amp/1", "--enable-auth")
	startUnit := func(unit string, eligible bool) { ag.startAs(rel, creds, unit, eligible) }
	for _, u := range []string{"ctl/0", "ctl/1"} {
		startUnit(u, true)
	}
	for _, u := range []string{"amp/0", "amp/1"} {
		startUnit(u, false)
	}

	obs := observe(t, etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint}, TLS: mustTLS(t, srv),
		Username: "root", Password: "root-secret", Relation: rel})
	allAvailable := func(s relation.Snapshot) bool {
		for _, u := range ag.running() {
			if !available(s, u) {
				return false
			}
		}
		return strings.HasPrefix(s.Leader, "ctl/")
	}
	before := awaitObs(t, obs, "4 units with certificates under RBAC", time.Minute, allAvailable)
	groupCA := caFingerprint(t, before.LeaderData[protocol.KeyCA])
	proveGroup(t, ag, groupCA, 0)

	// kill -9 etcd under the running group; restart it a few lease TTLs later.
	srv.Kill()
	time.Sleep(3 * ttl)
	srv.Start(t)
	after := awaitObs(t, obs, "the group after etcd's restart", time.Minute, allAvailable)
	if got := caFingerprint(t, after.LeaderData[protocol.KeyCA]); got != groupCA {
		t.Fatalf("the group's CA changed across etcd's restart: %.16s, was %.16s", got, groupCA)
	}
	for _, u := range ag.running() {
		if before.Units[u][protocol.KeySerial] != after.Units[u][protocol.KeySerial] {
			t.Errorf("%s: serial %s before etcd's restart, %s after: a certificate was lost", u,
				before.Units[u][protocol.KeySerial], after.Units[u][protocol.KeySerial])
		}
	}
	// A unit added afterwards: bootstrap again (idempotent, auth already on), then join.
	bootstrap("amp/0,amp/1,amp/2")
	startUnit("amp/2", false)
	awaitObs(t, obs, "amp/2's certificate", time.Minute, func(s relation.Snapshot) bool { return available(s, "amp/2") })
	proveGroup(t, ag, groupCA, 1)
	if info, err := os.Stat(etcdaccess.PasswordFile(creds, "amp/2")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("amp/2's password file: %v, mode %v; want 0600", err, info.Mode())
	}
}

func mustTLS(t *testing.T, srv *testservers.Etcd) *tls.Config {
	t.Helper()
	cfg, err := etcd.TLSConfig(srv.CAFile, srv.CertFile, srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
