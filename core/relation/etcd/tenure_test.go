package etcd

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// A leader whose keepalives go unanswered (its etcd stopped by SIGSTOP: the lease is
// neither renewed nor expired) stops acting as leader on its own: it is told when its
// tenure lapses, its snapshots name no leader from then on, and its leader writes are
// refused without reaching etcd. Once etcd answers again it leads again.
func TestStalledKeepalivesEndTheTenure(t *testing.T) {
	cluster := testservers.StartEtcdCluster(t, 1)
	tlsConfig, err := TLSConfig(cluster.CAFile, cluster.CertFile, cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	s, err := Open(Options{Schema: protocol.Schema(), Endpoints: cluster.Endpoints, Relation: "tenure", TLS: tlsConfig,
		LeaseTTL: ttl, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := s.Join(ctx, "db/0", relation.JoinOptions{LeaderEligible: true})
	if err != nil {
		t.Fatal(err)
	}
	awaitLeader := func(what string, want string) relation.Snapshot {
		t.Helper()
		wait, stop := context.WithTimeout(ctx, 20*time.Second)
		defer stop()
		for {
			snap, err := m.Snapshot(wait)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if snap.Leader == want {
				return snap
			}
			select {
			case <-snap.Changed:
			case <-wait.Done():
				t.Fatalf("%s: the snapshot still names %q as leader", what, snap.Leader)
			}
		}
	}
	awaitLeader("db/0 to lead", "db/0")

	cluster.Signal(1, syscall.SIGSTOP)
	defer cluster.Signal(1, syscall.SIGCONT)
	stopped := time.Now()
	// Nothing changes in etcd while it is stopped: only the lapse of the tenure can
	// close Changed, and the leader must hear of it.
	awaitLeader("the leader to stop leading with its keepalives unanswered", "")
	time.Sleep(time.Until(stopped.Add(ttl))) // past the lease's TTL, whatever the timers did
	if snap, err := m.Snapshot(ctx); err != nil || snap.Leader == "db/0" {
		t.Fatalf("a TTL after etcd stopped answering, the snapshot names leader %q (%v)", snap.Leader, err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, err := m.SetLeaderData(wctx, map[string]string{protocol.KeyCA: "x"}); !errors.Is(err, relation.ErrNotLeader) {
		t.Fatalf("a leader write with the tenure lapsed: %v, want %v", err, relation.ErrNotLeader)
	}

	cluster.Signal(1, syscall.SIGCONT)
	awaitLeader("db/0 to lead again once etcd answers", "db/0")
}
