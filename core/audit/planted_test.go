package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nobody is the uid another local user's files are given here (root chowns them, as
// the suite runs in CI).
const nobody = 65534

func plant(t *testing.T, path, text string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if uid != os.Getuid() {
		if err := os.Lchown(path, uid, uid); err != nil {
			t.Fatalf("giving %s to uid %d (the test runs as root, as in CI): %v", path, uid, err)
		}
	}
}

// What another local user can plant where the trail goes is refused, naming the key
// and the path: a symlink (root would append to its target), a file open to others'
// writes or owned by someone else (its records could be forged), a directory others
// may rename files in. The reader refuses a rotated file not written by the trail's
// owner, so a forged `signed` record is never shown as the leader's.
func TestPlantedTrailIsRefused(t *testing.T) {
	forged := `{"time":"2026-12-01T00:00:00Z","event":"signed","unit":"evil/0","serial":"ff"}` + "\n"
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, path string)
		want  string
	}{
		{"a symlink to another file", func(t *testing.T, dir, path string) {
			target := filepath.Join(dir, "target")
			plant(t, target, "", 0o600, os.Getuid())
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink"},
		{"a file others may write", func(t *testing.T, dir, path string) {
			plant(t, path, "", 0o666, os.Getuid())
		}, "writable by group or others"},
		{"another user's file", func(t *testing.T, dir, path string) {
			plant(t, path, forged, 0o600, nobody)
		}, "owned by uid 65534"},
		{"a directory anyone may rename files in", func(t *testing.T, dir, path string) {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}, "has mode 0777"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "trail")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "audit.jsonl")
			tt.setup(t, dir, path)
			_, err := Open(Options{Path: path})
			if err == nil || !strings.Contains(err.Error(), "audit.path") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open on %s: %v; want an error naming audit.path and saying %q", tt.name, err, tt.want)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "target")); len(b) != 0 {
				t.Errorf("the symlink's target was written: %q", b)
			}
		})
	}

	// A sticky directory open to all (/tmp) is allowed: others can neither rename nor
	// remove the trail there. A rotated file someone else put beside it is refused on
	// reading, by name.
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.jsonl")
	l, err := Open(Options{Path: path, Unit: "db/0"})
	if err != nil {
		t.Fatalf("a trail in a sticky directory: %v", err)
	}
	if err := l.Record(Event{Event: EventSigned, Unit: "db/1", Serial: "0a"}); err != nil {
		t.Fatal(err)
	}
	plant(t, path+".1", forged, 0o644, nobody)
	events, _, err := Read(path, Filter{})
	if err == nil || !strings.Contains(err.Error(), path+".1") || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("reading a trail with a forged rotated file: %v, %+v; want an error naming %s.1", err, events, path)
	}
}
