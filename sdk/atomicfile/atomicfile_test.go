package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// A failure names the file written, never its temporary file's random name, and keeps
// the errno: the same failure reads the same every time.
func TestFailureNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tls.crt")
	eio := func(f *os.File) error { return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.EIO} }
	var texts []string
	for range 2 {
		err := Writer{Sync: eio}.Write(path, []byte("x"), 0o644)
		if !errors.Is(err, syscall.EIO) || strings.Contains(err.Error(), ".tmp-") || !strings.Contains(err.Error(), path) {
			t.Fatalf("Write = %v, want an EIO naming %s and no temporary file", err, path)
		}
		texts = append(texts, err.Error())
	}
	if texts[0] != texts[1] {
		t.Fatalf("the same failure read %q, then %q", texts[0], texts[1])
	}
}
