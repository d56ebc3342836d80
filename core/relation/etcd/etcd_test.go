package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/core/relation/relationtest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// startEmbedded runs a real single-member etcd for one test.
func startEmbedded(t *testing.T) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

var relations atomic.Int64

func open(t *testing.T, endpoint, rel string, ttl time.Duration) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{endpoint}, Relation: rel, LeaseTTL: ttl, Log: hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Info})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEmbedded(t *testing.T) {
	srv := startEmbedded(t)
	relationtest.Run(t, func(t *testing.T) relation.Store {
		return open(t, srv.Endpoint(), fmt.Sprintf("r%d", relations.Add(1)), 2*time.Second)
	})
}

// A unit whose process dies (its connection closes without Leave) departs when its lease
// expires, and the leadership passes on within the TTL.
func TestDeadUnitDepartsAfterTTL(t *testing.T) {
	srv := startEmbedded(t)
	const ttl = 2 * time.Second
	leaderStore := open(t, srv.Endpoint(), "dead", ttl)
	a := relationtest.Join(t, leaderStore, "db/0", true)
	relationtest.Await(t, a, "db/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "db/0" })
	b := relationtest.Join(t, open(t, srv.Endpoint(), "dead", ttl), "db/1", true)
	if _, err := a.SetLeaderData(context.Background(), map[string]string{"ca": "x"}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	leaderStore.Close() // the process is gone: no Leave, no revoke
	snap := relationtest.Await(t, b, "db/1 to lead after db/0 died", func(s relation.Snapshot) bool { return s.Leader == "db/1" })
	took := time.Since(killed)
	t.Logf("new leader after %s (TTL %s)", took.Round(time.Millisecond), ttl)
	if took > 2*ttl {
		t.Errorf("new leader after %s: the dead leader's lease (TTL %s) should have expired sooner", took, ttl)
	}
	if _, ok := snap.Units["db/0"]; ok {
		t.Error("the dead unit is still joined")
	}
	if snap.LeaderData["ca"] != "x" {
		t.Errorf("leader data lost with the dead leader: %v", snap.LeaderData)
	}
	// The dead unit's name is free again for its next process.
	relationtest.Join(t, open(t, srv.Endpoint(), "dead", ttl), "db/0", true)
}

// etcd stopped and started again under running members: they keep (or take back) their
// membership, their watches resume, and nothing written is lost.
func TestEtcdRestartUnderMembers(t *testing.T) {
	dir := t.TempDir()
	url := fmt.Sprintf("http://127.0.0.1:%d", testservers.FreePort(t))
	srv, err := embedded.Start(embedded.Options{Dir: dir, ClientURL: url})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ttl = 2 * time.Second
	a := relationtest.Join(t, open(t, url, "restart", ttl), "db/0", true)
	b := relationtest.Join(t, open(t, url, "restart", ttl), "db/1", true)
	relationtest.Await(t, a, "db/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "db/0" })
	if err := b.SetUnitData(ctx, map[string]string{"csr": "before"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetLeaderData(ctx, map[string]string{"ca": "x"}); err != nil {
		t.Fatal(err)
	}
	relationtest.Await(t, b, "the CA before the restart", func(s relation.Snapshot) bool { return s.LeaderData["ca"] == "x" })

	srv.Close()             // waits up to etcd's request timeout (~7 s) for the members' streams
	time.Sleep(ttl + ttl/2) // down for longer than the TTL: leases may lapse, members must rejoin
	srv, err = embedded.Start(embedded.Options{Dir: dir, ClientURL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// Both leases lapsed, so either unit may lead now; whichever does writes, and the
	// other sees it through a resumed watch.
	snap := relationtest.Await(t, a, "a leader after the restart", func(s relation.Snapshot) bool { return s.Leader != "" })
	leader, other := a, b
	if snap.Leader == "db/1" {
		leader, other = b, a
	}
	deadline := time.Now().Add(relationtest.Timeout)
	for {
		_, err := leader.SetLeaderData(ctx, map[string]string{"db/1_signed_certificate": "after"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader %s never wrote after etcd restarted: %v", leader.Unit(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	relationtest.Await(t, other, "the write made after the restart", func(s relation.Snapshot) bool {
		return s.LeaderData["ca"] == "x" || other.Unit() == "db/0" // db/0 sees only its own keys when not leading
	})
	relationtest.Await(t, b, "db/1 to see the write made after the restart, and the CA from before", func(s relation.Snapshot) bool {
		return s.LeaderData["db/1_signed_certificate"] == "after" && s.LeaderData["ca"] == "x"
	})
	// db/1's bag is back (put again after a lapsed lease) and the leader sees it.
	relationtest.Await(t, leader, "the leader to see db/1's bag after the restart", func(s relation.Snapshot) bool {
		return s.Units["db/1"]["csr"] == "before"
	})
	a.Leave(ctx) // before the deferred Close, which would otherwise wait out their watches
	b.Leave(ctx)
}

// A unit that does not lead reads O(1) keys: the other units' bags never reach it.
func TestNarrowReadsDoNotGrowWithTheGroup(t *testing.T) {
	srv := startEmbedded(t)
	ctx := context.Background()
	shared := open(t, srv.Endpoint(), "narrow", 5*time.Second)
	leader := relationtest.Join(t, shared, "db/0", true)
	relationtest.Await(t, leader, "db/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "db/0" })
	ownStore := open(t, srv.Endpoint(), "narrow", 5*time.Second)
	me := relationtest.Join(t, ownStore, "db/1", false)
	big := strings.Repeat("x", 1024)
	for i := 2; i < 52; i++ {
		m := relationtest.Join(t, shared, fmt.Sprintf("db/%d", i), false)
		if err := m.SetUnitData(ctx, map[string]string{"csr": big}); err != nil {
			t.Fatal(err)
		}
	}
	relationtest.Await(t, leader, "the leader to see 52 units", func(s relation.Snapshot) bool { return len(s.Units) == 52 })
	if _, err := leader.SetLeaderData(ctx, map[string]string{"ca": "x", "db/1_signed_certificate": "c"}); err != nil {
		t.Fatal(err)
	}
	relationtest.Await(t, me, "db/1's certificate", func(s relation.Snapshot) bool { return s.LeaderData["db/1_signed_certificate"] == "c" })
	if got := ownStore.Stats().BytesRead.Load(); got > 2048 {
		t.Fatalf("a non-leader read %d bytes while 50 other units wrote 1 KiB bags: its reads grow with the group", got)
	}
	if got := shared.Stats().BytesRead.Load(); got < 50*1024 {
		t.Fatalf("the leader's store read only %d bytes: the test does not exercise what it claims", got)
	}
}

// testWriter sends a store's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Debian's etcd-server as the external cluster, over TLS with client certificates: the
// same behaviour as on the embedded member, from the v3.7 client to a 3.4 server.
func TestExternalEtcdOverTLS(t *testing.T) {
	srv := testservers.StartEtcd(t)
	tlsConfig, err := etcd.TLSConfig(srv.CAFile, srv.CertFile, srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	relationtest.Run(t, func(t *testing.T) relation.Store {
		s, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint}, TLS: tlsConfig,
			Relation: fmt.Sprintf("r%d", relations.Add(1)), LeaseTTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	// Without a client certificate, etcd refuses the connection.
	noCert, err := etcd.TLSConfig(srv.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint}, TLS: noCert, Relation: "x", DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := s.Join(ctx, "db/0", relation.JoinOptions{}); err == nil {
		t.Fatal("etcd with --client-cert-auth accepted a client without a certificate")
	}
}

// Each write a member makes comes back through its watch; the delay is the watch lag.
func TestWatchLagIsMeasured(t *testing.T) {
	srv := startEmbedded(t)
	lags := make(chan time.Duration, 100)
	s, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: "lag",
		OnWatchLag: func(d time.Duration) { lags <- d }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m := relationtest.Join(t, s, "db/0", true)
	relationtest.Await(t, m, "db/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "db/0" })
	for i := range 3 {
		start := time.Now()
		if err := m.SetUnitData(context.Background(), map[string]string{"n": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		select {
		case lag := <-lags:
			if lag <= 0 || lag > time.Since(start) {
				t.Fatalf("write %d: lag %s, want within (0, %s]", i, lag, time.Since(start))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d: no watch lag reported within 10s", i)
		}
	}
}

// A leader's view wakes it at once for a CSR, but takes a unit's status without waking
// it (until relation.LazyWake, here an hour): a group that reports its status after
// issuance does not make the leader decide once per unit.
func TestLeaderWakesForCSRsNotForStatus(t *testing.T) {
	t.Cleanup(etcd.SetLazyWake(time.Hour))
	srv := startEmbedded(t)
	s := open(t, srv.Endpoint(), "wake", 5*time.Second)
	leader := relationtest.Join(t, s, "db/0", true)
	asker := relationtest.Join(t, s, "db/1", false)
	ctx := context.Background()
	snap := relationtest.Await(t, leader, "db/0 to lead and see db/1", func(s relation.Snapshot) bool {
		_, joined := s.Units["db/1"]
		return s.Leader == "db/0" && joined
	})
	if err := asker.SetUnitData(ctx, map[string]string{"state": "waiting", "serial": "1f"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-snap.Changed:
		t.Fatal("a unit's status woke the leader")
	case <-time.After(300 * time.Millisecond):
	}
	if err := asker.SetUnitData(ctx, map[string]string{"csr": "CSR"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-snap.Changed:
	case <-time.After(relationtest.Timeout):
		t.Fatal("a CSR did not wake the leader")
	}
	// The status came with it: not announced is not lost.
	snap = relationtest.Await(t, leader, "db/0 to see db/1's CSR and status", func(s relation.Snapshot) bool {
		bag := s.Units["db/1"]
		return bag["csr"] == "CSR" && bag["state"] == "waiting" && bag["serial"] == "1f"
	})
	// The leader's own status write obeys the same rule: seen at once, waking nobody.
	if err := leader.SetUnitData(ctx, map[string]string{"state": "signing"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-snap.Changed:
		t.Fatal("the leader's own status write woke it")
	case <-time.After(300 * time.Millisecond):
	}
	if own, err := leader.Snapshot(ctx); err != nil || own.Units["db/0"]["state"] != "signing" {
		t.Fatalf("the leader does not read its own status write: %v %v", own.Units["db/0"], err)
	}
}

// A leader write larger than one transaction goes to etcd in chunks, several at once:
// every guard is still kept with its keys, and only the keys of guards that fail are
// dropped.
func TestLargeGuardedWriteLandsInChunks(t *testing.T) {
	srv := startEmbedded(t)
	s := open(t, srv.Endpoint(), "chunks", 10*time.Second)
	ctx := context.Background()
	leader := relationtest.Join(t, s, "db/0", true)
	relationtest.Await(t, leader, "db/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "db/0" })
	const units = 150 // two keys each: more than three transactions of etcd.maxOps
	kv := map[string]string{}
	var guards []relation.Guard
	var wantDropped []string
	for i := range units {
		unit := fmt.Sprintf("u/%d", i)
		m := relationtest.Join(t, s, unit, false)
		if err := m.SetUnitData(ctx, map[string]string{"csr": "csr-" + unit}); err != nil {
			t.Fatal(err)
		}
		cert, rejected := unit+"_signed_certificate", unit+"_rejected"
		kv[cert], kv[rejected] = "cert-"+unit, "rejected-"+unit
		g := relation.Guard{Unit: unit, Field: "csr", Value: "csr-" + unit, Keys: []string{cert, rejected}}
		if i%15 == 7 { // the unit sent another CSR meanwhile
			g.Value = "an older csr"
			wantDropped = append(wantDropped, cert, rejected)
		}
		guards = append(guards, g)
	}
	relationtest.Await(t, leader, "every CSR", func(s relation.Snapshot) bool {
		return s.Units[fmt.Sprintf("u/%d", units-1)]["csr"] != ""
	})
	dropped, err := leader.SetLeaderData(ctx, kv, guards...)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(dropped)
	slices.Sort(wantDropped)
	if !slices.Equal(dropped, wantDropped) {
		t.Errorf("dropped %v, want %v", dropped, wantDropped)
	}
	relationtest.Await(t, leader, "the rest of the write", func(s relation.Snapshot) bool {
		for k, v := range kv {
			_, got := s.LeaderData[k]
			if got == slices.Contains(wantDropped, k) || got && s.LeaderData[k] != v {
				return false
			}
		}
		return true
	})
}

// The units of one process spread their watches over several gRPC streams: on one
// stream the etcd client creates watches one at a time, so a process of many units
// joined no faster than one queue of round trips.
func TestMembersOfOneStoreShareSeveralWatchStreams(t *testing.T) {
	srv := startEmbedded(t)
	s := open(t, srv.Endpoint(), "streams", 5*time.Second)
	before := watchStreamsOpen(t)
	for i := range 16 {
		m := relationtest.Join(t, s, fmt.Sprintf("db/%d", i), false)
		relationtest.Await(t, m, "its first read", func(relation.Snapshot) bool { return true })
	}
	// A watch's stream opens with its first watch; give the last ones a moment.
	deadline := time.Now().Add(5 * time.Second)
	for watchStreamsOpen(t)-before < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if opened := watchStreamsOpen(t) - before; opened < 2 {
		t.Fatalf("16 members of one store opened %v watch streams, want several", opened)
	}
}

// The units of one process that do not lead follow who leads and the group's CA, sealed
// CA, CRL and chain through one follower: 5 watches in all, not 5 each. They all see its changes.
func TestMembersOfOneStoreFollowTheGroupKeysOnce(t *testing.T) {
	srv := startEmbedded(t)
	s := open(t, srv.Endpoint(), "group", 5*time.Second)
	before := steadyGauge(t, "etcd_debugging_mvcc_watcher_total")
	const units = 12
	var members []relation.Member
	for i := range units {
		m := relationtest.Join(t, s, fmt.Sprintf("db/%d", i), false)
		relationtest.Await(t, m, "its first read", func(relation.Snapshot) bool { return true })
		members = append(members, m)
	}
	// Each unit's own: its presence key, its bag, its certificate and its rejection.
	awaitGauge(t, "etcd_debugging_mvcc_watcher_total", before+float64(units*4+len(protocol.Schema().GroupKeys)+1))

	// What a leader would write (written here directly: no leader's watches to count).
	ctx := context.Background()
	for k, v := range map[string]string{"elected": "db/leader", "leader/ca": "the CA", "leader/db/3_signed_certificate": "a cert"} {
		if _, err := s.Client().Put(ctx, "/tlsrelay/group/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		mine := m.Unit() == "db/3"
		snap := relationtest.Await(t, m, "the CA and the leader", func(s relation.Snapshot) bool {
			_, cert := s.LeaderData["db/3_signed_certificate"]
			return s.LeaderData["ca"] == "the CA" && s.Leader == "db/leader" && cert == mine
		})
		if _, ok := snap.LeaderData["db/3_signed_certificate"]; ok != (m.Unit() == "db/3") {
			t.Fatalf("%s sees db/3's certificate: %v", m.Unit(), ok)
		}
	}
	// The last unit out stops the group's follower.
	for _, m := range members {
		if err := m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
	}
	awaitGauge(t, "etcd_debugging_mvcc_watcher_total", before)
}

// awaitGauge waits for etcd's gauge name to read want.
func awaitGauge(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gauge(t, name) != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := gauge(t, name); got != want {
		t.Fatalf("%s is %v, want %v", name, got, want)
	}
}

// steadyGauge reads etcd's gauge name once it has held still for a moment.
func steadyGauge(t *testing.T, name string) float64 {
	t.Helper()
	last := gauge(t, name)
	for still, deadline := 0, time.Now().Add(5*time.Second); still < 20 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if now := gauge(t, name); now != last {
			last, still = now, 0
		} else {
			still++
		}
	}
	return last
}

// watchStreamsOpen reads etcd's gauge of open watch streams (this process's members).
func watchStreamsOpen(t *testing.T) float64 {
	return gauge(t, "etcd_debugging_mvcc_watch_stream_total")
}

// gauge reads one of etcd's gauges (its server runs in this test process).
func gauge(t *testing.T, name string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s is not registered", name)
	return 0
}

// A deposed leader's write is refused by etcd itself: every leader write is fenced by
// the create revision of the `elected` key its writer created. Here the old leader is
// deposed behind its back (its key deleted, another unit elected) and still believes it
// leads; its write must not land.
func TestDeposedLeaderWriteIsRefused(t *testing.T) {
	srv := startEmbedded(t)
	s := open(t, srv.Endpoint(), "fence", 10*time.Second)
	ctx := context.Background()
	old := relationtest.Join(t, s, "db/0", true)
	relationtest.Await(t, old, "db/0 to lead", func(s relation.Snapshot) bool { return s.Leader == "db/0" })
	next := relationtest.Join(t, s, "db/1", true)
	if _, err := old.SetLeaderData(ctx, map[string]string{"ca": "first"}); err != nil {
		t.Fatalf("the leader's own write: %v", err)
	}
	if _, err := s.Client().Delete(ctx, "/tlsrelay/fence/elected"); err != nil {
		t.Fatal(err)
	}
	relationtest.Await(t, next, "db/1 to lead", func(s relation.Snapshot) bool { return s.Leader == "db/1" })
	_, err := old.SetLeaderData(ctx, map[string]string{"ca": "from the deposed leader"})
	if !errors.Is(err, relation.ErrNotLeader) {
		t.Fatalf("the deposed leader's write: %v, want ErrNotLeader", err)
	}
	resp, err := s.Client().Get(ctx, "/tlsrelay/fence/leader/ca")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "first" {
		t.Fatalf("leader/ca = %v, want the value written while db/0 led", resp.Kvs)
	}
}

// A write of a value etcd already holds is skipped: a renewal rewrites the CSR, not the
// profile that did not change, and a status written again unchanged makes no revision.
func TestUnchangedBagValuesAreNotWritten(t *testing.T) {
	srv := startEmbedded(t)
	m := relationtest.Join(t, open(t, srv.Endpoint(), "unchanged", 5*time.Second), "db/0", false)
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx := context.Background()
	modRevisions := func() (rev int64, fields map[string]int64) {
		resp, err := raw.Get(ctx, "", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		fields = map[string]int64{}
		for _, kv := range resp.Kvs {
			if k := string(kv.Key); strings.Contains(k, "db/0") {
				fields[k[strings.LastIndex(k, "/")+1:]] = kv.ModRevision
			}
		}
		return resp.Header.Revision, fields
	}
	if err := m.SetUnitData(ctx, map[string]string{"csr": "first", "profile": "peer"}); err != nil {
		t.Fatal(err)
	}
	_, before := modRevisions()
	if err := m.SetUnitData(ctx, map[string]string{"csr": "second", "profile": "peer"}); err != nil {
		t.Fatal(err)
	}
	rev, after := modRevisions()
	if after["profile"] != before["profile"] || after["csr"] == before["csr"] || before["profile"] == 0 {
		t.Fatalf("profile written again (%d -> %d) or csr not (%d -> %d)", before["profile"], after["profile"], before["csr"], after["csr"])
	}
	if err := m.SetUnitData(ctx, map[string]string{"csr": "second", "profile": "peer"}); err != nil {
		t.Fatal(err)
	}
	if again, _ := modRevisions(); again != rev {
		t.Fatalf("an unchanged write made revisions %d -> %d", rev, again)
	}
	// A value cleared and set again is written each time.
	for _, v := range []string{"", "peer"} {
		if err := m.SetUnitData(ctx, map[string]string{"profile": v}); err != nil {
			t.Fatal(err)
		}
	}
	if _, last := modRevisions(); last["profile"] <= after["profile"] {
		t.Fatalf("profile set again after a delete was skipped: %d", last["profile"])
	}
}

// DBHealth reports the database's size and how far history is compacted: 0 until
// something compacts it, then the revision compacted to.
func TestDBHealthSeesCompaction(t *testing.T) {
	srv := startEmbedded(t)
	s := open(t, srv.Endpoint(), "health", 5*time.Second)
	m := relationtest.Join(t, s, "db/0", false)
	ctx := context.Background()
	for i := range 20 {
		if err := m.SetUnitData(ctx, map[string]string{"csr": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.DBHealth(ctx, 2<<30)
	if err != nil || h.DBSize <= 0 || h.DBSizeInUse <= 0 || h.Revision < 20 || h.CompactRevision != 0 || h.QuotaBytes != 2<<30 {
		t.Fatalf("DBHealth = %+v, %v; want a size, 20 revisions or more, none compacted", h, err)
	}
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	compactTo := h.Revision - 5
	if _, err := raw.Compact(ctx, compactTo); err != nil {
		t.Fatal(err)
	}
	if h, err = s.DBHealth(ctx, 2<<30); err != nil || h.CompactRevision != compactTo {
		t.Fatalf("after compacting to %d: %+v, %v", compactTo, h, err)
	}
}

// A second agent with a unit name a live agent holds is refused once it has seen the
// holder renew its lease, not after waiting out twice the TTL. (A name whose holder died
// is taken once its lease expires: the agents' restart tests in cmd/tlsrelay.)
func TestATakenUnitNameIsRefused(t *testing.T) {
	srv := startEmbedded(t)
	const ttl = 3 * time.Second
	relationtest.Join(t, open(t, srv.Endpoint(), "taken", ttl), "db/0", false)
	_, err := open(t, srv.Endpoint(), "taken", ttl).Join(context.Background(), "db/0", relation.JoinOptions{})
	if !errors.Is(err, etcd.ErrDuplicate) || !strings.Contains(err.Error(), "another agent runs this unit") {
		t.Fatalf("a second agent of db/0: %v, want ErrDuplicate after seeing the holder renew", err)
	}
}
