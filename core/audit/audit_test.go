package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestRecordAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit", "tlsrelay.jsonl")
	l, err := Open(Options{Path: path, Relation: "db", Unit: "db/0"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return at }
	if err := l.Record(Event{Event: EventSigned, Unit: "db/1", Serial: "0a"}, Event{Event: EventRejected, Unit: "db/2", Rule: "held"}); err != nil {
		t.Fatal(err)
	}
	at = at.Add(time.Hour)
	if err := l.Record(Event{Event: EventLeaderLost}); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 0600", info.Mode().Perm())
	}
	tests := []struct {
		filter Filter
		want   []string
	}{
		{Filter{}, []string{"signed db/1", "rejected db/2", "leader_lost "}},
		{Filter{Unit: "db/1"}, []string{"signed db/1"}},
		{Filter{Unit: "db/0"}, []string{"signed db/1", "rejected db/2", "leader_lost "}}, // it recorded them all
		{Filter{Since: at}, []string{"leader_lost "}},
	}
	for _, tt := range tests {
		events, skipped, err := Read(path, tt.filter)
		if err != nil || skipped != 0 {
			t.Fatalf("Read: %v, %d skipped", err, skipped)
		}
		var got []string
		for _, e := range events {
			got = append(got, e.Event+" "+e.Unit)
			if e.Relation != "db" || e.Leader != "db/0" || e.Time.IsZero() {
				t.Errorf("event not stamped: %+v", e)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Read(%+v) = %v, want %v", tt.filter, got, tt.want)
		}
	}
	var off *Log
	if err := off.Record(Event{Event: EventSigned}); err != nil {
		t.Fatal("a nil Log must record nothing, without error")
	}
	if l, err := Open(Options{}); l != nil || err != nil {
		t.Fatal("an empty path is audit off")
	}
}

// Many writers, in two Logs on one file, rotating it as they go: every record is read
// back once, whole, in the rotated files and the current one together.
func TestConcurrentWritersAndRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	const writers, each = 4, 100
	var wg sync.WaitGroup
	for w := range writers {
		l, err := Open(Options{Path: path, MaxBytes: 4 << 10, Keep: 1000})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := l.Record(Event{Event: EventSigned, Unit: fmt.Sprintf("w%d", w), Serial: fmt.Sprint(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	events, skipped, err := Read(path, Filter{})
	if err != nil || skipped != 0 {
		t.Fatalf("Read: %v, %d skipped", err, skipped)
	}
	seen := map[string]bool{}
	for _, e := range events {
		k := e.Unit + "/" + e.Serial
		if seen[k] {
			t.Fatalf("%s read twice", k)
		}
		seen[k] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d records read back, want %d", len(seen), writers*each)
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatal("the file was never rotated")
	}
}

// A torn last line (a crash mid-write) is skipped and counted; the others are read.
func TestTornLineIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _ := Open(Options{Path: path})
	l.Record(Event{Event: EventSigned, Unit: "a/0"})
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-12-02T10:00:00Z","event":"sig`)
	f.Close()
	events, skipped, err := Read(path, Filter{})
	if err != nil || len(events) != 1 || skipped != 1 {
		t.Fatalf("Read = %d events, %d skipped, %v; want 1 and 1", len(events), skipped, err)
	}
}
