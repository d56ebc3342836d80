package relation

import (
	"context"
	"errors"
	"testing"
	"time"
)

func join(t *testing.T, s Store, unit string) Member {
	t.Helper()
	m, err := s.Join(context.Background(), unit)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func snap(t *testing.T, m Member) Snapshot {
	t.Helper()
	s, err := m.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMemoryLeadershipFollowsJoinOrder(t *testing.T) {
	ctx := context.Background()
	store := NewMemory()
	a, b, c := join(t, store, "db/0"), join(t, store, "db/1"), join(t, store, "db/2")
	if got := snap(t, c).Leader; got != "db/0" {
		t.Fatalf("leader = %q, want db/0", got)
	}
	if err := b.SetLeaderData(ctx, map[string]string{"ca": "x"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower wrote leader data: err = %v, want ErrNotLeader", err)
	}
	if err := a.SetLeaderData(ctx, map[string]string{"ca": "x"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	s := snap(t, c)
	if s.Leader != "db/1" {
		t.Fatalf("after the leader left, leader = %q, want db/1", s.Leader)
	}
	if s.LeaderData["ca"] != "x" {
		t.Fatalf("leader data lost on leader change: %v", s.LeaderData)
	}
	if _, ok := s.Units["db/0"]; ok {
		t.Fatal("departed unit's bag is still visible")
	}
	if _, err := a.Snapshot(ctx); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("departed member: err = %v, want ErrNotJoined", err)
	}
}

func TestMemoryBagsAndDeletes(t *testing.T) {
	ctx := context.Background()
	store := NewMemory()
	a, b := join(t, store, "db/0"), join(t, store, "db/1")
	if _, err := store.Join(ctx, "db/1"); err == nil {
		t.Fatal("joining a name twice succeeded")
	}
	if err := b.SetUnitData(ctx, map[string]string{"csr": "c", "profile": "peer"}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUnitData(ctx, map[string]string{"profile": ""}); err != nil {
		t.Fatal(err)
	}
	got := snap(t, a).Units["db/1"]
	if got["csr"] != "c" || len(got) != 1 {
		t.Fatalf("db/1 bag = %v, want only csr=c", got)
	}
}

func TestMemorySnapshotIsACopy(t *testing.T) {
	ctx := context.Background()
	store := NewMemory()
	a := join(t, store, "db/0")
	before := snap(t, a)
	if err := a.SetUnitData(ctx, map[string]string{"csr": "c"}); err != nil {
		t.Fatal(err)
	}
	if len(before.Units["db/0"]) != 0 {
		t.Fatal("a held snapshot changed under its holder")
	}
	before.Units["db/0"]["x"] = "y" // must not reach the store
	if _, ok := snap(t, a).Units["db/0"]["x"]; ok {
		t.Fatal("writing to a snapshot changed the store")
	}
}

func TestMemoryChangedWakesWaiters(t *testing.T) {
	ctx := context.Background()
	store := NewMemory()
	a, b := join(t, store, "db/0"), join(t, store, "db/1")
	s := snap(t, b)
	select {
	case <-s.Changed:
		t.Fatal("Changed closed before any change")
	default:
	}
	go a.SetUnitData(ctx, map[string]string{"csr": "c"})
	select {
	case <-s.Changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not closed after a write")
	}
	if snap(t, b).Revision <= s.Revision {
		t.Fatal("revision did not advance")
	}
}
