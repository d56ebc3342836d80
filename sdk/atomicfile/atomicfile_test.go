package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteReplacesWithMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tls.key")
	for i, mode := range []os.FileMode{0o600, 0o644, 0o600} {
		data := []byte{byte('a' + i)}
		if err := Write(path, data, mode); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		info, _ := os.Stat(path)
		if string(got) != string(data) || info.Mode().Perm() != mode {
			t.Fatalf("write %d: content %q mode %o, want %q %o", i, got, info.Mode().Perm(), data, mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestWriteOwned(t *testing.T) {
	dir := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 { // root can give files away: prove it does
		uid, gid = 65534, 65534
	}
	path := filepath.Join(dir, "tls.crt")
	if err := WriteOwned(path, []byte("x"), 0o640, uid, gid); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	st := info.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid || info.Mode().Perm() != 0o640 {
		t.Fatalf("owner %d:%d mode %o, want %d:%d 0640", st.Uid, st.Gid, info.Mode().Perm(), uid, gid)
	}
	if os.Getuid() != 0 {
		if err := WriteOwned(path, []byte("y"), 0o640, 0, -1); err == nil {
			t.Fatal("giving a file to root without privilege succeeded")
		}
	}
}

func TestWriteReusingKeepsTheSparesInode(t *testing.T) {
	dir := t.TempDir()
	path, spare := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "pending.csr")
	if err := os.WriteFile(spare, []byte("a longer old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(spare)
	if err := WriteOwnedReusing(path, spare, []byte("new"), 0o640, -1, -1); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	after, _ := os.Stat(path)
	if string(got) != "new" || after.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %o, want \"new\" 0640", got, after.Mode().Perm())
	}
	if !os.SameFile(before, after) {
		t.Error("a new inode was made: the spare was not reused")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("want only %s left, have %v", path, entries)
	}
}

func TestWriteReusingFallsBack(t *testing.T) {
	tests := []struct {
		name  string
		spare func(dir string) string
	}{
		{"missing spare", func(dir string) string { return filepath.Join(dir, "gone") }},
		{"spare with another link", func(dir string) string {
			spare := filepath.Join(dir, "pending.csr")
			os.WriteFile(spare, []byte("old"), 0o644)
			os.Link(spare, filepath.Join(dir, "other-link"))
			return spare
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "tls.crt")
			if err := WriteOwnedReusing(path, tt.spare(dir), []byte("new"), 0o644, -1, -1); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); string(got) != "new" {
				t.Fatalf("content %q", got)
			}
			if other, err := os.ReadFile(filepath.Join(dir, "other-link")); err == nil && string(other) != "old" {
				t.Fatalf("another link of the spare now reads %q: it was written through", other)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "tls.crt" && e.Name() != "other-link" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
	if err := WriteOwnedReusing("/a/x", "/b/y", nil, 0o644, -1, -1); err == nil {
		t.Error("a spare in another directory was accepted")
	}
}
