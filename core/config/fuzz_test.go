package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds the loader arbitrary YAML. It must never panic, and a config it
// accepts must compile to a signing policy.
func FuzzLoad(f *testing.F) {
	paths, _ := filepath.Glob("../../configs/*.yaml")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("certificate: {renew_at: .nan, validity: 1e400h}\n"))
	f.Add([]byte("policy: {sans: ['{{.Unit', '*.a'], keys: {rsa: [-1]}}\n"))
	f.Add([]byte("plugins: {x: {command: rel/path, sha256: zz, env: ['A B']}}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yaml []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, builtins)
		if err != nil {
			return
		}
		if _, err := cfg.SigningPolicy(); err != nil {
			t.Fatalf("a config that loads has no signing policy: %v", err)
		}
		if !(cfg.Certificate.RenewAt > 0 && cfg.Certificate.RenewAt <= 1) {
			t.Fatalf("renew_at %v accepted", cfg.Certificate.RenewAt)
		}
	})
}
