package etcd

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// With two of three members gone, a join fails saying that the cluster has no leader
// and which members answer, not only that a deadline passed; with all three gone, that
// none answers.
func TestQuorumLossIsNamed(t *testing.T) {
	cluster := testservers.StartEtcdCluster(t, 3)
	tlsConfig, err := TLSConfig(cluster.CAFile, cluster.CertFile, cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Schema: protocol.Schema(), Endpoints: cluster.Endpoints, Relation: "quorum", TLS: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	join := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		m, err := s.Join(ctx, "db/0", relation.JoinOptions{})
		if err == nil {
			m.Leave(context.Background())
		}
		return err
	}
	if err := join(); err != nil {
		t.Fatalf("join with the whole cluster: %v", err)
	}
	cluster.Kill(2)
	cluster.Kill(3)
	noQuorum := "etcd cluster has no leader (quorum lost?): 1 of 3 members answer (" + cluster.Endpoints[0] + ")"
	err = join()
	if err == nil || !strings.Contains(err.Error(), noQuorum) {
		t.Fatalf("join without quorum: %v", err)
	}
	// An observer (tlsrelay status) says the same, not only that its wait ran out.
	observe := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		obs, err := s.Observe(ctx)
		if err != nil {
			return err
		}
		defer obs.Close()
		_, err = obs.Snapshot(ctx)
		return err
	}
	if err := observe(); err == nil || !strings.Contains(err.Error(), noQuorum) {
		t.Fatalf("observing without quorum: %v", err)
	}
	cluster.Kill(1)
	if err := join(); err == nil || !strings.Contains(err.Error(), "no etcd member answers") {
		t.Fatalf("join with no member: %v", err)
	}
}

// A full backend (etcd's NOSPACE alarm) is named with its remedy in the error of the
// write that meets it, and the remedy works: evicting the unit that filled it.
func TestFullBackendIsNamed(t *testing.T) {
	cluster := testservers.StartEtcdCluster(t, 1, "--quota-backend-bytes=8388608")
	tlsConfig, err := TLSConfig(cluster.CAFile, cluster.CertFile, cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Schema: protocol.Schema(), Endpoints: cluster.Endpoints, Relation: "full", TLS: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.Join(context.Background(), "db/0", relation.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("x", 1<<20)
	for i := range 64 {
		err = m.SetUnitData(context.Background(), map[string]string{protocol.KeyCSR: value + strconv.Itoa(i)})
		if err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "etcd's backend is full") || !strings.Contains(err.Error(), "tlsrelay etcd evict") {
		t.Fatalf("writing past an 8 MiB quota: %v", err)
	}
	alarms, err := s.Alarms(context.Background())
	if err != nil || len(alarms) != 1 || !strings.Contains(alarms[0], "alarm NOSPACE: its backend is full") {
		t.Fatalf("alarms = %q, %v; want the NOSPACE alarm with its remedy", alarms, err)
	}

	// Evicting the unit that filled it works on the full etcd: its keys deleted, the
	// space given back (compacted, defragmented, the alarm disarmed), its note left; a
	// new unit then joins and writes, with no other action.
	ctx := context.Background()
	if _, err := s.Join(ctx, "db/1", relation.JoinOptions{}); err == nil {
		t.Fatal("a unit joined a full etcd; the test proves nothing")
	}
	did, err := Evict(ctx, s.Client(), "full", protocol.Schema(), "db/0", protocol.NoteGone)
	story := strings.Join(did, "\n")
	if err != nil {
		t.Fatalf("evict on a full etcd: %v\n%s", err, story)
	}
	for _, want := range []string{"etcd is full", "compacted etcd's history", "defragmented " + cluster.Endpoints[0], "NOSPACE alarm", `left the note "gone"`} {
		if !strings.Contains(story, want) {
			t.Errorf("evict did not say %q:\n%s", want, story)
		}
	}
	m1, err := s.Join(ctx, "db/1", relation.JoinOptions{})
	if err != nil {
		t.Fatalf("a unit joining after the eviction: %v", err)
	}
	if err := m1.SetUnitData(ctx, map[string]string{protocol.KeyState: "ok"}); err != nil {
		t.Fatalf("a unit writing after the eviction: %v", err)
	}
	obs, err := s.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	if snap, err := obs.Snapshot(ctx); err != nil || snap.Away["db/0"] != protocol.NoteGone || snap.Units["db/1"][protocol.KeyState] != "ok" {
		t.Fatalf("after the eviction: %v; db/0's note %q, db/1's bag %v", err, snap.Away["db/0"], snap.Units["db/1"])
	}
	if alarms, err := s.Alarms(ctx); err != nil || len(alarms) != 0 {
		t.Fatalf("alarms after the eviction: %q, %v", alarms, err)
	}
}
