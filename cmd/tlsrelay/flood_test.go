package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/internal/app/etcdaccess"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// A member holding its own etcd credentials (after `etcd bootstrap`) writes 1 MiB values
// into its bag as fast as it can for 20 s: it cannot add keys, the leader keeps none of
// it beyond the current value, a new honest unit gets its certificate within 10 s of
// asking meanwhile, and the leader's memory stays bounded. `tlsrelay etcd evict` then
// takes the rogue out for good: its credentials open nothing, its certificates are
// revoked, and the group goes on with no other root action.
func TestRogueFloodUnderRBAC(t *testing.T) {
	t.Parallel()
	srv := testservers.StartEtcd(t)
	const rel = "flood"
	ag := newAgentsWith(t, fmt.Sprintf(`relation:
  name: %s
  store: etcd
  etcd:
    endpoints: [%q]
    tls: {ca_file: %q, cert_file: %q, key_file: %q}
    lease_ttl: 2s
`, rel, srv.Endpoint, srv.CAFile, srv.CertFile, srv.KeyFile), true)
	creds, rootFile := filepath.Join(ag.dir, "credentials"), filepath.Join(ag.dir, "root.password")
	if err := os.WriteFile(rootFile, []byte("root-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runBinary(t, ag.bin, "etcd", "bootstrap", "--config", ag.config, "--leader-eligible", "ctl/0",
		"--members", "amp/0,amp/1,rogue/0", "--credentials-dir", creds, "--root-password-file", rootFile, "--enable-auth"); r.code != 0 {
		t.Fatalf("etcd bootstrap: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	startUnit := func(unit string, eligible bool) { ag.startAs(rel, creds, unit, eligible) }
	startUnit("ctl/0", true)
	startUnit("amp/0", false)
	obs := observe(t, etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint}, TLS: mustTLS(t, srv),
		Username: "root", Password: "root-secret", Relation: rel})
	awaitObs(t, obs, "two units with certificates", time.Minute, func(s relation.Snapshot) bool {
		return available(s, "ctl/0") && available(s, "amp/0")
	})

	password, err := os.ReadFile(etcdaccess.PasswordFile(creds, "rogue/0"))
	if err != nil {
		t.Fatal(err)
	}
	rogueStore, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint}, TLS: mustTLS(t, srv),
		Username: etcd.UserName(rel, "rogue/0"), Password: strings.TrimSpace(string(password)), Relation: rel, LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rogueStore.Close()
	rogue, err := rogueStore.Join(context.Background(), "rogue/0", relation.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kv, prefix := rogueStore.Client(), "/tlsrelay/"+rel+"/units/rogue/0/"
	if _, err := kv.Put(context.Background(), prefix+"filler", "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("the rogue wrote a key of its own: %v", err)
	}
	var writes, bytes atomic.Int64
	flooded := make(chan struct{})
	floodStart := time.Now()
	go func() {
		defer close(flooded)
		value := make([]byte, 1<<20)
		// At least 20 s, and on until past the write budget within the minute the leader
		// counts it in (from its first bag write, the join): a loaded machine writes 1 MiB
		// values more slowly, and the test must not depend on how fast.
		for time.Since(floodStart) < 20*time.Second || writes.Load() <= protocol.WriteBudget && time.Since(floodStart) < 50*time.Second {
			rand.Read(value)
			if _, err := kv.Put(context.Background(), prefix+protocol.KeyCSR, string(value)); err == nil {
				writes.Add(1)
				bytes.Add(int64(len(value)))
			}
		}
	}()
	time.Sleep(5 * time.Second)
	asked := time.Now()
	startUnit("amp/1", false)
	awaitObs(t, obs, "amp/1's certificate during the flood", 10*time.Second, func(s relation.Snapshot) bool { return available(s, "amp/1") })
	t.Logf("amp/1 signed %s after it started, %d MiB written by the rogue so far", time.Since(asked).Round(time.Millisecond), bytes.Load()>>20)
	<-flooded
	rss := rssOf(t, ag.pid("ctl/0"))
	t.Logf("the rogue wrote %d values of 1 MiB in %s; the leader's RSS after: %d MiB", writes.Load(), time.Since(floodStart).Round(time.Second), rss>>20)
	if rss > 300<<20 {
		t.Errorf("the leader's RSS is %d MiB after the flood, want under 300", rss>>20)
	}
	if n := writes.Load(); n <= protocol.WriteBudget {
		t.Fatalf("the rogue wrote %d values in 50 s, not more than the budget of %d a minute: no flood to name", n, protocol.WriteBudget)
	}
	// The leader names it as writing over its budget; status shows that.
	awaitObs(t, obs, "the leader to name the rogue as noisy", 10*time.Second, func(s relation.Snapshot) bool {
		return s.Units["ctl/0"][protocol.KeyNoisy] == "rogue/0"
	})
	if r := runBinary(t, ag.bin, "status", "--config", rootConfig(t, ag, rootFile)); r.code != 0 || !strings.Contains(r.stdout, "more than 120 times a minute: rogue/0") {
		t.Errorf("status after the flood: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Evicted: its user is gone, its keys too; it is marked gone for good (what was
	// issued to it, nothing here, is revoked at once).
	r := runBinary(t, ag.bin, "etcd", "evict", "rogue/0", "--config", ag.config, "--root-password-file", rootFile)
	if r.code != 0 || !strings.Contains(r.stdout, "deleted etcd user") {
		t.Fatalf("etcd evict: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := rogue.SetUnitData(context.Background(), map[string]string{protocol.KeyState: "back"}); err == nil {
		t.Error("the evicted rogue still writes its bag")
	}
	awaitObs(t, obs, "the rogue gone for good", 30*time.Second, func(s relation.Snapshot) bool {
		_, joined := s.Units["rogue/0"]
		return !joined && s.Away["rogue/0"] == protocol.NoteGone
	})
	// The group goes on: every unit keeps its certificate; a new unit is signed. The
	// bootstrap that adds it, run with the evicted unit still listed, gives that one a
	// new password: the one the rogue holds opens nothing.
	roguePassword := string(mustRead(t, etcdaccess.PasswordFile(creds, "rogue/0")))
	r = runBinary(t, ag.bin, "etcd", "bootstrap", "--config", ag.config, "--leader-eligible", "ctl/0",
		"--members", "amp/0,amp/1,amp/2,rogue/0", "--credentials-dir", creds, "--root-password-file", rootFile)
	if r.code != 0 {
		t.Fatalf("etcd bootstrap of amp/2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if now := string(mustRead(t, etcdaccess.PasswordFile(creds, "rogue/0"))); now == roguePassword || !strings.Contains(r.stdout, "unit rogue/0 was evicted") {
		t.Errorf("bootstrap after evict handed rogue/0 its old password back (changed: %t):\n%s", now != roguePassword, r.stdout)
	}
	startUnit("amp/2", false)
	awaitObs(t, obs, "amp/2's certificate after the eviction", 30*time.Second, func(s relation.Snapshot) bool {
		return available(s, "amp/2") && available(s, "amp/0") && available(s, "amp/1") && available(s, "ctl/0")
	})
}

// rssOf reads a process's resident set size, in bytes, from /proc.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// BenchmarkRogueFillsQuota measures how long a member writing 1 MiB values into its own
// CSR field as fast as it can takes to fill etcd's backend quota (its NOSPACE alarm),
// with the settings docs/SECURITY.md recommends: the default 2 GiB quota, revision
// auto-compaction keeping 10,000 revisions, requests of at most 1.5 MiB. Run it alone:
//
//	go test -run '^$' -bench RogueFillsQuota -benchtime 1x ./cmd/tlsrelay
func BenchmarkRogueFillsQuota(b *testing.B) {
	for range b.N {
		cluster := testservers.StartEtcdCluster(b, 1, "--auto-compaction-mode=revision", "--auto-compaction-retention=10000",
			"--max-request-bytes=1572864")
		tlsConfig, err := etcd.TLSConfig(cluster.CAFile, cluster.CertFile, cluster.KeyFile)
		if err != nil {
			b.Fatal(err)
		}
		s, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: cluster.Endpoints, Relation: "quota", TLS: tlsConfig})
		if err != nil {
			b.Fatal(err)
		}
		m, err := s.Join(context.Background(), "rogue/0", relation.JoinOptions{})
		if err != nil {
			b.Fatal(err)
		}
		value := make([]byte, 1<<20)
		start, writes := time.Now(), 0
		for ; time.Since(start) < 15*time.Minute; writes++ {
			rand.Read(value)
			if err := m.SetUnitData(context.Background(), map[string]string{protocol.KeyCSR: string(value)}); err != nil {
				if !strings.Contains(err.Error(), "backend is full") {
					b.Fatal(err)
				}
				break
			}
		}
		took := time.Since(start)
		b.ReportMetric(took.Seconds(), "s-to-NOSPACE")
		b.ReportMetric(float64(writes), "MiB-written")
		s.Close()
	}
}

// rootConfig writes the agents' config with etcd's root user (its password in
// passwordFile) for the CLI's commands that need it, and returns its path.
func rootConfig(t *testing.T, ag *agents, passwordFile string) string {
	t.Helper()
	config, err := os.ReadFile(ag.config)
	if err != nil {
		t.Fatal(err)
	}
	root := strings.Replace(string(config), "    lease_ttl:", fmt.Sprintf("    username: root\n    password_file: %q\n    lease_ttl:", passwordFile), 1)
	if root == string(config) {
		t.Fatal("rootConfig: the config has no relation.etcd.lease_ttl to put the user before")
	}
	path := filepath.Join(ag.dir, "root.yaml")
	if err := os.WriteFile(path, []byte(root), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
