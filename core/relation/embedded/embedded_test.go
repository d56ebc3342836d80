package embedded

import (
	"errors"
	"testing"
	"time"
)

// The embedded member runs with pre-vote (docs/SECURITY.md: a member that heals after
// a partition must not depose the leader).
func TestPreVote(t *testing.T) {
	s, err := Start(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.etcd.Server.Cfg.PreVote {
		t.Fatal("the embedded etcd runs without pre-vote")
	}
}

// A second Start on a served directory says at once where it is served, instead of
// waiting on etcd's locks; once the first stops, the directory can be served again.
func TestServedDirectory(t *testing.T) {
	dir := t.TempDir()
	first, err := Start(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(Options{Dir: dir, StartTimeout: 5 * time.Second})
	var served *ServedError
	if !errors.As(err, &served) || served.Endpoint != first.Endpoint() {
		t.Fatalf("a second Start = %v, want a ServedError naming %s", err, first.Endpoint())
	}
	if endpoint, ok := Served(dir); !ok || endpoint != first.Endpoint() {
		t.Fatalf("Served = %q, %v; want %s", endpoint, ok, first.Endpoint())
	}
	first.Close()
	if _, ok := Served(dir); ok {
		t.Fatal("Served after Close: still served")
	}
	again, err := Start(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Start after the first stopped: %v", err)
	}
	again.Close()
}

// The directory's owner (Wait) outwaits another process that serves it meanwhile, and
// serves it once that one stops.
func TestOwnerWaitsForTheDirectory(t *testing.T) {
	dir := t.TempDir()
	outsider, err := Start(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		owner, err := Start(Options{Dir: dir, Wait: true})
		if err == nil {
			owner.Close()
		}
		started <- err
	}()
	select {
	case err := <-started:
		t.Fatalf("the owner started while another process served the directory: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	outsider.Close()
	if err := <-started; err != nil {
		t.Fatalf("the owner, once the directory was free: %v", err)
	}
}
