package durable

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
)

func TestWriteReusingKeepsTheSparesInode(t *testing.T) {
	dir := t.TempDir()
	path, spare := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "pending.csr")
	if err := os.WriteFile(spare, []byte("a longer old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(spare)
	if err := (atomicfile.Writer{Temp: Spare(spare)}).Write(path, []byte("new"), 0o640); err != nil {
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
			if err := (atomicfile.Writer{Temp: Spare(tt.spare(dir))}).Write(path, []byte("new"), 0o644); err != nil {
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
	// A spare in another directory is left alone: a rename across directories would
	// move it, and across file systems fail.
	elsewhere := filepath.Join(t.TempDir(), "pending.csr")
	os.WriteFile(elsewhere, []byte("old"), 0o644)
	path := filepath.Join(t.TempDir(), "tls.crt")
	if err := (atomicfile.Writer{Temp: Spare(elsewhere)}).Write(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(elsewhere); err != nil || string(got) != "old" {
		t.Errorf("the spare in another directory was taken: %q, %v", got, err)
	}
}
