package agent

import (
	"os"
	"slices"
	"testing"
)

// Installing moves the pending key and reuses the spent CSR's inode for the
// certificate: no key is copied, and no inode is made that the unit did not need.
func TestInstallPromotesThePendingFiles(t *testing.T) {
	f := files{dir: t.TempDir(), mode: 0o644}
	if err := f.savePending([]byte("key"), []byte("csr")); err != nil {
		t.Fatal(err)
	}
	key, _ := os.Stat(f.path(PendingKeyFile))
	csr, _ := os.Stat(f.path(PendingCSRFile))
	if err := f.install([]byte("chain"), []byte("ca")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, content string
		mode          os.FileMode
		was           os.FileInfo // the inode it must be, if any
	}{
		{KeyFile, "key", 0o600, key},
		{CertFile, "chain", 0o644, csr},
		{CAFile, "ca", 0o644, nil},
	}
	for _, tt := range tests {
		got, err := os.ReadFile(f.path(tt.name))
		info, _ := os.Stat(f.path(tt.name))
		switch {
		case err != nil || string(got) != tt.content:
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.content)
		case info.Mode().Perm() != tt.mode:
			t.Errorf("%s: mode %o, want %o", tt.name, info.Mode().Perm(), tt.mode)
		case tt.was != nil && !os.SameFile(info, tt.was):
			t.Errorf("%s is a new inode", tt.name)
		}
	}
	entries, _ := os.ReadDir(f.dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{CAFile, CertFile, KeyFile}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v, want %v", names, want)
	}
}
