package safedir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheck(t *testing.T) {
	root := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(root, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode) // past the umask
		return p
	}
	good := mk("good", 0o700)
	link := filepath.Join(root, "link")
	os.Symlink(good, link)
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o600)
	tests := []struct {
		dir, want string
	}{
		{good, ""},
		{mk("world", 0o777), "mode 0777"},
		{mk("group", 0o770), "mode 0770"},
		{link, "is a symlink"},
		{file, "is not a directory"},
	}
	if os.Getuid() == 0 { // only root can give a directory away
		foreign := mk("foreign", 0o700)
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ dir, want string }{foreign, "owned by uid 65534"})
	}
	for _, tt := range tests {
		err := Check(tt.dir)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Check(%s) = %v, want %q", filepath.Base(tt.dir), err, tt.want)
		}
	}
}

func TestCheckKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ca-key.pem")
	os.WriteFile(key, []byte("k"), 0o600)
	if err := CheckKeyFile(key); err != nil {
		t.Fatal(err)
	}
	os.Chmod(key, 0o666)
	if err := CheckKeyFile(key); err == nil || !strings.Contains(err.Error(), "mode 0666") {
		t.Fatalf("a 0666 key: %v", err)
	}
	link := filepath.Join(dir, "link.pem")
	os.Symlink(key, link)
	if err := CheckKeyFile(link); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a symlinked key: %v", err)
	}
}

func TestLockIsExclusiveAndNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	holder := fmt.Sprintf("in use by another tlsrelay process (pid %d)", os.Getpid())
	if _, err := Lock(dir); err == nil || !strings.Contains(err.Error(), holder) {
		t.Fatalf("second Lock = %v, want %q", err, holder)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Lock left %d entries in the directory (%s); it locks the directory itself", len(entries), entries[0].Name())
	}
	unlock()
	again, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	again()
}

// A process of an earlier version holds the lock file it made: Lock keeps out of it.
func TestLockHonoursAnEarlierVersionsLockFile(t *testing.T) {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); err == nil || !strings.Contains(err.Error(), "in use by another tlsrelay process") {
		t.Fatalf("Lock beside a held %s = %v", LockFile, err)
	}
	f.Close() // the earlier process exits; its file stays
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after the earlier process left: %v", err)
	}
	if _, err := Lock(dir); err == nil {
		t.Fatal("a second Lock succeeded while the first held the directory")
	}
	unlock()
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, uid int) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("s3cret\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if uid != os.Getuid() {
			if err := os.Chown(path, uid, uid); err != nil {
				t.Fatalf("giving %s to uid %d (the test runs as root, as in CI): %v", path, uid, err)
			}
		}
		return path
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("linked", 0o600, os.Getuid()), link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string // want: "" reads it
	}{
		{"0600, this user's", write("own", 0o600, os.Getuid()), ""},
		{"0400", write("readonly", 0o400, os.Getuid()), ""},
		{"a link to a 0600 file (a secret volume)", link, ""},
		{"0644", write("open", 0o644, os.Getuid()), "has mode 0644"},
		{"0660", write("group", 0o660, os.Getuid()), "has mode 0660"},
		{"another user's", write("theirs", 0o600, 65534), "owned by uid 65534"},
		{"a directory", dir, "not a regular file"},
		{"missing", filepath.Join(dir, "none"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ReadSecret(tt.path)
			switch {
			case tt.want == "" && (err != nil || string(b) != "s3cret\n"):
				t.Fatalf("ReadSecret(%s) = %q, %v; want the secret", tt.path, b, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || b != nil):
				t.Fatalf("ReadSecret(%s) = %q, %v; want an error saying %q, nothing read", tt.path, b, err, tt.want)
			}
		})
	}
}
