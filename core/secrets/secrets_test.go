package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
	"github.com/tlsrelay/tlsrelay/plugins/barbican"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// fixed is an in-memory secrets backend for the file-layout unit tests; the real
// Barbican is exercised below and in plugins/barbican.
type fixed struct {
	sdk.Unimplemented
	s sdk.Secret
}

func (fixed) Info(context.Context) (sdk.Info, error)                { return sdk.Info{Name: "fixed"}, nil }
func (fixed) Configure(context.Context, sdk.ConfigureRequest) error { return nil }
func (f fixed) FetchSecret(context.Context, string) (sdk.Secret, error) {
	return f.s, nil
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func TestWriteLayoutModesAndBundle(t *testing.T) {
	m := testservers.NewMaterial(t)
	b := fixed{s: sdk.Secret{CertificatePEM: m.Cert, Key: m.Key, IntermediatesPEM: m.Inter}}
	dir := filepath.Join(t.TempDir(), "l1")
	bundle := filepath.Join(t.TempDir(), "haproxy", "l1.pem")
	r, err := Fetch(context.Background(), b, config.Secret{Name: "l1", Ref: "ref-1", Output: config.SecretOutput{Dir: dir, Bundle: bundle}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		data []byte
		mode os.FileMode
	}{
		filepath.Join(dir, CertFile):  {m.Cert, 0o644},
		filepath.Join(dir, KeyFile):   {m.Key, 0o600},
		filepath.Join(dir, ChainFile): {m.Inter, 0o644},
		bundle:                        {append(append(append([]byte{}, m.Cert...), m.Inter...), m.Key...), 0o600},
	}
	for path, w := range want {
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, w.data) || mode(t, path) != w.mode {
			t.Errorf("%s: err %v, mode %o, content ok %v; want mode %o", path, err, mode(t, path), bytes.Equal(got, w.data), w.mode)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, BundleFile)); err == nil {
		t.Error("an explicit bundle path also wrote the directory's bundle")
	}
	if len(r.Written) != 4 || !strings.Contains(r.Summary(), `subject "CN=listener-1.example"`) {
		t.Errorf("result %+v, summary %q", r, r.Summary())
	}
	// Same content again: nothing rewritten, and a loosened key mode is put right.
	os.Chmod(filepath.Join(dir, KeyFile), 0o644)
	r, err = Fetch(context.Background(), b, config.Secret{Name: "l1", Ref: "ref-1", Output: config.SecretOutput{Dir: dir, Bundle: bundle}})
	if err != nil || len(r.Written) != 0 || len(r.Kept) != 4 || mode(t, filepath.Join(dir, KeyFile)) != 0o600 {
		t.Fatalf("second fetch: %+v, %v, key mode %o", r, err, mode(t, filepath.Join(dir, KeyFile)))
	}
}

// TestRefresherAgainstRealBarbican: secrets are fetched at once and again every
// interval; while Barbican is down the failure is reported and the files stay.
func TestRefresherAgainstRealBarbican(t *testing.T) {
	server := testservers.StartBarbican(t)
	m := testservers.NewMaterial(t)
	ref := server.As(t, "demo").CertificateContainer("l1", m.Cert, m.Key, m.Inter)
	backend := barbican.New(nil)
	cfg, _ := json.Marshal(map[string]any{"auth": map[string]any{"type": "noauth", "endpoint": server.URL, "project_id": "demo"},
		"retry_deadline": "1s", "timeout": "1s"})
	if err := backend.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: cfg}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var mu sync.Mutex
	var results []error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Refresher{
		Backend:  func(context.Context) (sdk.Backend, error) { return backend, nil },
		Secrets:  []config.Secret{{Name: "l1", Ref: ref, Output: config.SecretOutput{Dir: dir}}},
		Interval: 200 * time.Millisecond,
		OnResult: func(_ Result, err error) { mu.Lock(); results = append(results, err); mu.Unlock() },
	}
	go r.Run(ctx)
	waitFor := func(what string, ok func([]error) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			done := ok(results)
			mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; results %v", what, results)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("two good fetches", func(rs []error) bool { return len(rs) >= 2 && rs[0] == nil && rs[1] == nil })
	key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if !bytes.Equal(key, m.Key) || mode(t, filepath.Join(dir, KeyFile)) != 0o600 {
		t.Fatal("key not written, or not 0600")
	}

	server.Stop(t)
	waitFor("an unavailable fetch", func(rs []error) bool { return sdk.IsCode(rs[len(rs)-1], sdk.CodeUnavailable) })
	if after, _ := os.ReadFile(filepath.Join(dir, KeyFile)); !bytes.Equal(after, m.Key) {
		t.Fatal("a failed fetch lost the files of the last good one")
	}
	server.Start(t)
	mu.Lock()
	n := len(results)
	mu.Unlock()
	waitFor("a good fetch after the restart", func(rs []error) bool { return len(rs) > n && rs[len(rs)-1] == nil })
}
