package atomicfile

import (
	"os"
	"path/filepath"
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
