package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/testkit/syncbuf"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// misbehaving returns a host running the misbehave plugin in mode.
func misbehaving(t *testing.T, mode string, env ...string) *Host {
	t.Helper()
	t.Setenv("MISBEHAVE", mode)
	bin := testbin.Build(t, testbin.Misbehave)
	return newHost(t, map[string]config.Plugin{"bad": {Command: bin, SHA256: testbin.SHA256(t, bin),
		Env: append([]string{"MISBEHAVE", "MISBEHAVE_PIDFILE"}, env...)}}, config.Roles{CSR: "bad", Signer: "bad"})
}

// within fails the test when fn takes longer than limit.
func within(t *testing.T, limit time.Duration, what string, fn func()) time.Duration {
	t.Helper()
	start := time.Now()
	fn()
	took := time.Since(start)
	if took > limit {
		t.Errorf("%s took %s, more than %s", what, took.Round(time.Millisecond), limit)
	}
	return took
}

// A plugin that never completes the handshake is given up on when the caller's
// deadline passes (not go-plugin's fixed minute), and its process is gone.
func TestPluginHangingAtStartIsStoppedAtTheCallersDeadline(t *testing.T) {
	h := misbehaving(t, "hang-start")
	var err error
	within(t, 5*time.Second, "For with a 1s deadline", func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = h.For(ctx, config.RoleCSR)
	})
	if err == nil || !strings.Contains(err.Error(), "plugin bad: start") {
		t.Fatalf("For = %v, want a start failure naming the plugin", err)
	}
	if len(h.Pids()) != 0 {
		t.Errorf("a plugin is still registered: %v", h.Pids())
	}
}

// A plugin stuck in a call: the call ends at the caller's deadline, and Close still
// ends the process within seconds.
func TestPluginHangingMidCallIsStoppedAtTheCallersDeadline(t *testing.T) {
	h := misbehaving(t, "hang-call")
	b, err := h.For(context.Background(), config.RoleSigner)
	if err != nil {
		t.Fatal(err)
	}
	pid := h.Pids()["bad"]
	within(t, 4*time.Second, "SignCSR with a 1s deadline", func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = b.SignCSR(ctx, sdk.SignRequest{Unit: "db/0"})
	})
	if !sdk.Retryable(err) {
		t.Errorf("SignCSR = %v, want an Unavailable (deadline) error", err)
	}
	// The stuck plugin is killed; the next call gets a fresh one.
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("plugin %d, stuck in a call past its deadline, still alive", pid)
	}
	if _, err := h.For(context.Background(), config.RoleSigner); err != nil || h.Pids()["bad"] == pid {
		t.Errorf("For after the kill: %v, pid %d (was %d): want a new process", err, h.Pids()["bad"], pid)
	}
	within(t, 5*time.Second, "Close", h.Close)
}

// forking runs a misbehaving plugin in mode, one that starts a child, and returns the
// host and the child's pid (killed when the test ends, whatever the host did).
func forking(t *testing.T, mode string) (*Host, int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	t.Setenv("MISBEHAVE_PIDFILE", pidFile)
	h := misbehaving(t, mode)
	if _, err := h.For(context.Background(), config.RoleCSR); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(raw))
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	return h, child
}

// A plugin whose child (in a session of its own) holds its stdout and stderr: Close
// returns within seconds instead of waiting for the pipes for ever.
func TestPluginChildHoldingStdoutCannotHangClose(t *testing.T) {
	h, _ := forking(t, "fork-stdout")
	plugin := h.Pids()["bad"]
	took := within(t, 6*time.Second, "Close", h.Close)
	t.Logf("Close took %s", took)
	if alive(plugin) {
		t.Errorf("plugin %d alive after Close", plugin)
	}
}

// exited: pid is gone, or a zombie (it died; its parent, or init, has yet to reap it).
func exited(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces, so the state follows the last ")".
	rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// Killing a plugin kills its process group: a child it started (a tool it runs) does
// not outlive it.
func TestPluginChildDiesWithIt(t *testing.T) {
	h, child := forking(t, "fork-group")
	h.Close()
	// Killed, its parent gone, it waits as a zombie until init reaps it: that counts as dead.
	for deadline := time.Now().Add(10 * time.Second); !exited(child); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's child %d outlived the plugin by 10 s", child)
		}
	}
}

// The plugin's circumstances: stdin is /dev/null, it has no controlling terminal (so
// nothing in it can prompt), it leads its own process group, and an external plugin
// sees only the base environment and the variables its config names.
func TestPluginProcessIsIsolated(t *testing.T) {
	t.Setenv("OS_PASSWORD", "secret-of-the-host")
	t.Setenv("PASSED_ON", "yes")
	h := misbehaving(t, "report", "PASSED_ON")
	b, err := h.For(context.Background(), config.RoleCSR)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.CreateCSR(context.Background(), sdk.CSRRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		StdinDev, StdinIno uint64
		TTYError           string
		Env                []string
		Pid, Pgid, Sid     int
		ConfigJSON         string
		Validity           string
	}
	if err := json.Unmarshal(out.CSRPEM, &r); err != nil {
		t.Fatalf("report: %v: %s", err, out.CSRPEM)
	}
	var null syscall.Stat_t
	if err := syscall.Stat(os.DevNull, &null); err != nil {
		t.Fatal(err)
	}
	if r.StdinDev != uint64(null.Dev) || r.StdinIno != null.Ino {
		t.Errorf("the plugin's stdin is not %s", os.DevNull)
	}
	if r.TTYError == "" {
		t.Error("the plugin could open /dev/tty: it has a controlling terminal")
	}
	if r.Pgid != r.Pid || r.Sid != r.Pid {
		t.Errorf("pid %d, process group %d, session %d: want a session and group of its own", r.Pid, r.Pgid, r.Sid)
	}
	env := strings.Join(r.Env, "\n")
	for _, want := range []string{"PATH=", "PASSED_ON=yes", "TLSRELAY_PLUGIN="} {
		if !strings.Contains(env, want) {
			t.Errorf("the plugin's environment lacks %s", want)
		}
	}
	if strings.Contains(env, "OS_PASSWORD") {
		t.Error("the host's OS_PASSWORD reached an external plugin whose config does not name it")
	}
	// Its TLS identity came through a pipe: the environment names the descriptor and
	// carries the host's certificate, never a key.
	if !strings.Contains(env, sdk.EnvTransportFD+"=3") || strings.Contains(env, "PRIVATE KEY") {
		t.Errorf("the plugin's environment: want %s=3 and no private key:\n%s", sdk.EnvTransportFD, env)
	}
	if r.ConfigJSON != "{}" { // no config: section is an empty object, not null
		t.Errorf("Configure received %q for a plugin without config, want {}", r.ConfigJSON)
	}
	if r.Validity != testValidity.String() { // a remote signer refuses a mismatch with it
		t.Errorf("Configure received validity %q, want the host's %s", r.Validity, testValidity)
	}
}

// A plugin built with an sdk that predates the host-issued TLS identity answers with
// go-plugin's AutoMTLS (its own P-521 certificate in the handshake): the host still
// connects, with mutual TLS.
func TestPluginOfAnOlderSDKConnects(t *testing.T) {
	h := misbehaving(t, "old-sdk")
	b, err := h.For(context.Background(), config.RoleCSR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateCSR(context.Background(), sdk.CSRRequest{}); err != nil {
		t.Fatalf("a call to a plugin that answers with AutoMTLS: %v", err)
	}
}

// The binary executed is the file whose checksum was verified: replacing the file
// right after the check (a rename over it) changes nothing that runs.
func TestChecksumIsOfTheFileExecuted(t *testing.T) {
	dir := t.TempDir()
	good := testbin.Build(t, testbin.Misbehave)
	path := filepath.Join(dir, "plugin")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := config.Plugin{Command: path, SHA256: testbin.SHA256(t, good)}
	f, err := openVerified("bad", spec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Swap in another program under the same name, as an attacker would between the
	// check and the exec.
	evil := filepath.Join(dir, "evil")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\necho swapped\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(evil, path); err != nil {
		t.Fatal(err)
	}
	out, _ := externalCommand(spec, f).CombinedOutput()
	if strings.Contains(string(out), "swapped") || !strings.Contains(string(out), "plugin") {
		t.Fatalf("the process run after the swap printed %q: not the verified plugin binary", out)
	}
	// And a check made now refuses the file at the path.
	if _, err := openVerified("bad", spec); err == nil || !strings.Contains(err.Error(), "refusing to run") {
		t.Fatalf("openVerified on the swapped file = %v", err)
	}
}

// misbehavingLogged is misbehaving with the host's log, at info, captured.
func misbehavingLogged(t *testing.T, mode string) (*Host, *syncbuf.Buffer) {
	t.Helper()
	t.Setenv("MISBEHAVE", mode)
	bin := testbin.Build(t, testbin.Misbehave)
	logs := &syncbuf.Buffer{} // the host log, read while plugins write
	h, err := New(Options{
		Plugins: map[string]config.Plugin{"bad": {Command: bin, SHA256: testbin.SHA256(t, bin), Env: []string{"MISBEHAVE"}}},
		Roles:   config.Roles{CSR: "bad", Signer: "bad"}, StateDir: t.TempDir(),
		Logger: hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Info, Output: logs}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, logs
}

// A plugin's log line at info, from a logger it made inside a call (after Serve
// started), reaches the host's log with the plugin's name and level.
func TestPluginLogsReachTheHost(t *testing.T) {
	h, logs := misbehavingLogged(t, "log-in-call")
	b, err := h.For(context.Background(), config.RoleSigner)
	if err != nil {
		t.Fatal(err)
	}
	b.SignCSR(context.Background(), sdk.SignRequest{Unit: "db/7"})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "signing inside the plugin") {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin's log line never reached the host:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for !strings.Contains(logs.String(), "plain text on stderr from inside SignCSR") {
		if time.Now().After(deadline) {
			t.Fatalf("what the plugin wrote to os.Stderr never reached the host:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "signing inside the plugin") && !(strings.Contains(line, "[INFO]") && strings.Contains(line, "bad") && strings.Contains(line, "unit=db/7")) {
			t.Errorf("the line lost its level, plugin name or fields: %s", line)
		}
	}
}

// A plugin that crashes leaves its last words in the host's log at error level.
func TestCrashedPluginLeavesItsLastLinesInTheHostLog(t *testing.T) {
	h, logs := misbehavingLogged(t, "crash-in-call")
	b, err := h.For(context.Background(), config.RoleSigner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SignCSR(context.Background(), sdk.SignRequest{Unit: "db/7"}); err == nil {
		t.Fatal("SignCSR of a crashing plugin succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "plugin died") {
		if time.Now().After(deadline) {
			t.Fatalf("no report of the crash in the host's log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := logs.String(); !strings.Contains(out, "[ERROR]") || !strings.Contains(out, "crashing inside SignCSR for db/7") {
		t.Fatalf("the crash report lacks the plugin's last words:\n%s", out)
	}
}
