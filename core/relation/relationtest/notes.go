package relationtest

import (
	"context"
	"errors"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// notes: what a unit leaves behind when it leaves (Member.LeaveWithNote, Store.SetAway).
func notes(t *testing.T, s relation.Store) {
	ctx := context.Background()
	a := Join(t, s, "db/0", true)
	Await(t, a, "db/0 to lead", leaderIs("db/0"))
	b := Join(t, s, "db/1", false)
	must(t, b.SetUnitData(ctx, map[string]string{"state": "ok"}))
	Await(t, a, "db/1's bag", func(s relation.Snapshot) bool { return s.Units["db/1"]["state"] == "ok" })
	if err := s.SetAway(ctx, "db/1", "gone"); !errors.Is(err, relation.ErrJoined) {
		t.Fatalf("SetAway for a joined unit = %v, want ErrJoined", err)
	}
	must(t, b.LeaveWithNote(ctx, "back"))
	Await(t, a, "db/1 gone, its note left", func(s relation.Snapshot) bool {
		_, joined := s.Units["db/1"]
		return !joined && s.Away["db/1"] == "back"
	})
	must(t, s.SetAway(ctx, "db/1", "gone")) // an operator's word, once it left
	o, err := s.Observe(ctx)
	must(t, err)
	defer o.Close()
	Await(t, o, "the observer to see the operator's note", func(s relation.Snapshot) bool { return s.Away["db/1"] == "gone" })
	b = Join(t, s, "db/1", false)
	Await(t, a, "db/1 back, its note cleared", func(s relation.Snapshot) bool {
		_, joined := s.Units["db/1"]
		return joined && s.Away["db/1"] == ""
	})
	if snap, err := b.Snapshot(ctx); err != nil || len(snap.Away) != 0 {
		t.Fatalf("a unit that does not lead sees notes %v (%v)", snap.Away, err)
	}
}
