package backend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func TestMain(m *testing.M) { testbin.Main(m) }

var cfsslRoles = config.Roles{CSR: "cfssl", Signer: "cfssl"}

// testValidity is the certificate lifetime the test hosts tell their plugins.
const testValidity = 90 * time.Minute

func newHost(t *testing.T, plugins map[string]config.Plugin, roles config.Roles) *Host {
	t.Helper()
	h, err := New(Options{
		Self:     testbin.Build(t, testbin.Tlsrelay),
		Plugins:  plugins,
		Roles:    roles,
		StateDir: t.TempDir(),
		Logger:   hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: newTestWriter(t)}),
		Validity: testValidity,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// testWriter sends log lines to t.Log until the test ends; later lines (a killed
// plugin's "plugin died", reported a pipeGrace after its exit) are dropped, since
// t.Log after the test panics.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestBuiltinRunsAsChildProcessAndCloseLeavesNoOrphans(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, map[string]config.Plugin{"cfssl": {Builtin: true}}, cfsslRoles)
	b, err := h.For(ctx, config.RoleCSR)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := b.CreateCSR(ctx, sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: "db/0"})
	if err != nil || !strings.Contains(string(csr.CSRPEM), "CERTIFICATE REQUEST") {
		t.Fatalf("CreateCSR through the plugin: %v", err)
	}
	pid := h.Pids()["cfssl"]
	if pid == 0 || pid == os.Getpid() || !alive(pid) {
		t.Fatalf("plugin pid = %d: not a live child process", pid)
	}
	// Signer and csr roles share the one process of the same backend.
	if _, err := h.For(ctx, config.RoleSigner); err != nil || h.Pids()["cfssl"] != pid {
		t.Fatalf("signer role: err %v, pid %d, want the same process %d", err, h.Pids()["cfssl"], pid)
	}
	h.Close()
	if alive(pid) {
		t.Fatalf("plugin process %d still alive after Close", pid)
	}
	if _, err := h.For(ctx, config.RoleCSR); err == nil {
		t.Fatal("For after Close succeeded")
	}
}

func TestCrashedPluginIsRelaunched(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, map[string]config.Plugin{"cfssl": {Builtin: true}}, cfsslRoles)
	var restarts []string
	h.opts.OnRestart = func(plugin string) { restarts = append(restarts, plugin) } // called under h.mu
	if _, err := h.For(ctx, config.RoleSigner); err != nil {
		t.Fatal(err)
	}
	if _, err := h.For(ctx, config.RoleCSR); err != nil || len(restarts) != 0 {
		t.Fatalf("a second role of a running plugin: err %v, restarts %v, want none", err, restarts)
	}
	first := h.Pids()["cfssl"]
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(first) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let go-plugin notice the exit
	b, err := h.For(ctx, config.RoleSigner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CA(ctx); err != nil {
		t.Fatalf("relaunched plugin: %v", err)
	}
	if second := h.Pids()["cfssl"]; second == first || second == 0 {
		t.Fatalf("pid after crash = %d, want a new process (was %d)", second, first)
	}
	if !slices.Equal(restarts, []string{"cfssl"}) {
		t.Fatalf("restarts reported = %v, want [cfssl]", restarts)
	}
}

func TestExternalPluginIsPinnedByChecksum(t *testing.T) {
	ctx := context.Background()
	bin := testbin.Build(t, testbin.CfsslPlugin)
	sum := testbin.SHA256(t, bin)

	h := newHost(t, map[string]config.Plugin{"ext": {Command: bin, SHA256: sum}}, config.Roles{CSR: "ext", Signer: "ext"})
	b, err := h.For(ctx, config.RoleSigner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CA(ctx); err != nil {
		t.Fatal(err)
	}

	// A copy of the binary with one byte appended: same program, different checksum.
	tampered := filepath.Join(t.TempDir(), "tlsrelay-plugin-cfssl")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, append(data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	h = newHost(t, map[string]config.Plugin{"ext": {Command: tampered, SHA256: sum}}, config.Roles{CSR: "ext"})
	_, err = h.For(ctx, config.RoleCSR)
	if err == nil || !strings.Contains(err.Error(), "refusing to run "+tampered) || !strings.Contains(err.Error(), sum) {
		t.Fatalf("tampered binary: err = %v, want a refusal naming the file and the pinned sum", err)
	}
	if len(h.Pids()) != 0 {
		t.Fatal("a tampered binary was started")
	}

	// The real binary, pinned by a checksum wrong in its last byte alone: every byte of
	// the sum counts (a comparison of its first bytes lived through the test above).
	last := "0"
	if sum[len(sum)-1] == '0' {
		last = "1"
	}
	h = newHost(t, map[string]config.Plugin{"ext": {Command: bin, SHA256: sum[:len(sum)-1] + last}}, config.Roles{CSR: "ext"})
	if _, err = h.For(ctx, config.RoleCSR); err == nil || !strings.Contains(err.Error(), "refusing to run "+bin) {
		t.Fatalf("a checksum wrong in its last byte: err = %v, want a refusal", err)
	}
}

func TestLaunchErrorsAreClear(t *testing.T) {
	ctx := context.Background()
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		plugins map[string]config.Plugin
		roles   config.Roles
		role    config.Role
		want    []string
	}{
		{"plugin path that does not exist",
			map[string]config.Plugin{"ext": {Command: "/nonexistent/tlsrelay-plugin-x", SHA256: sum}},
			config.Roles{CSR: "ext"}, config.RoleCSR,
			[]string{"plugins.ext.command", "/nonexistent/tlsrelay-plugin-x", "no such file"}},
		{"backend name not configured",
			map[string]config.Plugin{"cfssl": {Builtin: true}}, config.Roles{CSR: "vault"}, config.RoleCSR,
			[]string{`plugin "vault" is not configured`, "cfssl"}},
		{"role the backend cannot serve",
			map[string]config.Plugin{"cfssl": {Builtin: true}}, config.Roles{CSR: "cfssl", Secrets: "cfssl"}, config.RoleSecrets,
			[]string{"roles.secrets", `backend "cfssl"`, "lacks fetch_secret"}},
		{"unconfigured role",
			map[string]config.Plugin{"cfssl": {Builtin: true}}, config.Roles{CSR: "cfssl"}, config.RoleSecrets,
			[]string{"roles.secrets: no backend configured"}},
		{"bad backend config",
			map[string]config.Plugin{"cfssl": {Builtin: true, Config: map[string]any{"ca_validty": "1h"}}}, cfsslRoles, config.RoleSigner,
			[]string{"plugins.cfssl.config", "ca_validty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, tt.plugins, tt.roles)
			_, err := h.For(ctx, tt.role)
			if err == nil {
				t.Fatal("For succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// What only an edit of the config mends stops the agent; the rest retries.
			permanent := tt.name == "role the backend cannot serve" || tt.name == "bad backend config" || tt.name == "plugin path that does not exist"
			if fault.IsPermanent(err) != permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, !permanent, permanent)
			}
		})
	}
}

func TestErrorCodesCrossTheProcessBoundary(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, map[string]config.Plugin{"cfssl": {Builtin: true}}, cfsslRoles)
	b, err := h.For(ctx, config.RoleSigner)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.SignCSR(ctx, sdk.SignRequest{CSRPEM: []byte("garbage"), Profile: sdk.ProfilePeer, Unit: "db/7"})
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != sdk.CodeInvalidArgument || e.Ref != "csr of db/7" {
		t.Fatalf("garbage CSR: err = %#v, want InvalidArgument about csr of db/7", err)
	}
	_, err = b.FetchSecret(ctx, "ref-1")
	if !sdk.IsCode(err, sdk.CodeUnimplemented) || !strings.Contains(err.Error(), "ref-1") {
		t.Fatalf("FetchSecret on cfssl: err = %v, want Unimplemented naming the ref", err)
	}
}

// A plugin no call has used for IdleStop is stopped and started again on the next For,
// which is not counted as a restart; one kept warm stays however idle.
func TestIdlePluginsStopAndStartOnDemand(t *testing.T) {
	var restarts, idleStops atomic.Int64
	h, err := New(Options{Plugins: map[string]config.Plugin{"cfssl": {Builtin: true}}, Roles: config.Roles{CSR: "cfssl", Signer: "cfssl"},
		StateDir: t.TempDir(), Self: testbin.Build(t, testbin.Tlsrelay), IdleStop: 300 * time.Millisecond,
		OnRestart: func(string) { restarts.Add(1) }, OnIdleStop: func(string) { idleStops.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	csr := func() {
		t.Helper()
		b, err := h.For(ctx, config.RoleCSR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.CreateCSR(ctx, sdk.CSRRequest{CommonName: "a-0", SANs: []string{"a-0"}, Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}}); err != nil {
			t.Fatal(err)
		}
	}
	csr()
	first := h.Pids()["cfssl"]
	awaitCond(t, "the idle plugin stopped", func() bool { return len(h.Pids()) == 0 })
	csr() // on demand
	if second := h.Pids()["cfssl"]; second == 0 || second == first {
		t.Fatalf("plugin pids %d then %d: not started again on demand", first, second)
	}
	if restarts.Load() != 0 || idleStops.Load() < 1 {
		t.Fatalf("%d restarts counted, %d idle stops; want 0 and at least 1", restarts.Load(), idleStops.Load())
	}
	h.KeepWarm(config.RoleSigner, true)
	kept := h.Pids()["cfssl"]
	time.Sleep(time.Second) // three idle periods: kept warm, it stays
	if h.Pids()["cfssl"] != kept {
		t.Fatal("a plugin kept warm was stopped for idleness")
	}
	h.KeepWarm(config.RoleSigner, false)
	awaitCond(t, "the plugin no longer kept warm stopped", func() bool { return len(h.Pids()) == 0 })
}

func awaitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}
