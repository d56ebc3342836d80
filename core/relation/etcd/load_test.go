package etcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
)

// A full read of the relation is paged (loadPage keys per read), and every page is read
// at the first one's revision: a bag changed and a unit added between pages are not in
// the copy, which is the relation as of one moment.
func TestPagedReadIsOneRevision(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s, err := Open(Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: "paged", LeaseTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const units = 7
	for i := range units {
		if _, err := s.client.Put(ctx, s.layout.field(fmt.Sprintf("u/%d", i), "csr"), fmt.Sprintf("v1-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	defer func(old int64) { loadPage, onPage = old, nil }(loadPage)
	loadPage = 2
	pages := 0
	onPage = func() {
		pages++
		if pages == 1 { // between the first page and the rest
			s.client.Put(ctx, s.layout.field("u/6", "csr"), "changed")
			s.client.Put(ctx, s.layout.field("zz/1", "csr"), "new")
		}
	}
	f := wideFollower(s)
	rev, err := f.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pages < units/2 {
		t.Fatalf("%d further pages for %d keys at %d a page", pages, units, loadPage)
	}
	seen := 0
	for key, r := range f.revs {
		if r > rev {
			t.Errorf("%s at revision %d, after the read's %d", key, r, rev)
		}
		if unit, field, ok := s.layout.fieldOf(key); ok && field == "csr" {
			seen++
			if unit == "zz/1" {
				t.Error("a unit added between pages is in the copy")
			}
		}
	}
	if seen != units {
		t.Fatalf("%d bags in the copy, want %d", seen, units)
	}
	if got := f.stats.Reads.Load(); got != 1 {
		t.Errorf("%d full reads counted for one paged read", got)
	}
}

// wideFollower is a follower of the whole relation that is not started: load reads it.
func wideFollower(s *Store) *follower {
	return &follower{client: s.client, layout: s.layout, scope: s.layout.wideScope(), notify: func() {}, log: hclog.NewNullLogger(),
		stats: &Stats{}, revs: map[string]int64{}, written: map[int64]time.Time{}, echoed: map[int64]time.Time{}, ready: make(chan struct{})}
}
