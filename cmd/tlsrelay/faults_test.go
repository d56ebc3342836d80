package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/internal/testkit/syncbuf"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// Failures that trying again cannot mend stop `up` at once (not after --timeout),
// with the cause on the last line and exit status 3, in both of up's modes.
func TestPermanentErrorsStopUpAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	plugin := testbin.Build(t, testbin.CfsslPlugin)
	tests := []struct {
		name  string
		args  []string
		setup func(upDir string)
		want  string
	}{
		{name: "a plugin binary whose checksum differs",
			args: []string{"--config", write("sum.yaml", "roles: {csr: ext, signer: ext}\nplugins: {ext: {command: "+plugin+", sha256: "+strings.Repeat("ab", 32)+"}}\n")},
			want: "refusing to run " + plugin},
		{name: "a config key the backend does not know",
			args: []string{"--config", write("key.yaml", "plugins: {cfssl: {builtin: true, config: {ca_validty: 1h}}}\n")},
			want: "ca_validty"},
		{name: "an output directory that is a file",
			setup: func(upDir string) { os.WriteFile(filepath.Join(upDir, "node-0"), nil, 0o644) },
			want:  "node-0 is not a directory"},
		{name: "a unit directory that is a symlink",
			setup: func(upDir string) { os.Symlink(t.TempDir(), filepath.Join(upDir, "node-1")) },
			want:  "node-1 is a symlink"},
	}
	for _, tt := range tests {
		for _, mode := range []string{"processes", "in-process"} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				upDir := t.TempDir()
				if tt.setup != nil {
					tt.setup(upDir)
				}
				args := append([]string{"up", "--dir", upDir, "--units", "2", "--timeout", "2m"}, tt.args...)
				if mode == "in-process" {
					args = append(args, "--in-process")
				}
				start := time.Now()
				r := run(t, args...)
				took := time.Since(start)
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				if r.code != fault.ExitPermanent || !strings.Contains(lines[len(lines)-1], tt.want) {
					t.Fatalf("exit %d, last line %q; want exit %d and a last line naming %q\n%s%s",
						r.code, lines[len(lines)-1], fault.ExitPermanent, tt.want, r.stdout, r.stderr)
				}
				if took > time.Minute {
					t.Errorf("up took %s to give up: it retried a permanent error", took)
				}
			})
		}
	}
}

// Two `up` runs on one directory: the second is refused at once, naming the first.
func TestTwoUpsOnOneDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unlock, err := safedir.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	r := run(t, "up", "--dir", dir, "--units", "1")
	if r.code != fault.ExitPermanent || !strings.Contains(r.stderr, "in use by another tlsrelay process (pid") {
		t.Fatalf("up on a directory in use: exit %d\n%s", r.code, r.stderr)
	}
}

// A state directory planted with a CA whose key anyone may read is refused, not used.
func TestPlantedStateIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if r := run(t, "up", "--dir", dir, "--units", "1", "--in-process"); r.code != 0 {
		t.Fatalf("first up: exit %d\n%s", r.code, r.stderr)
	}
	key := filepath.Join(dir, "state", "cfssl", "ca-key.pem")
	if err := os.Chmod(key, 0o666); err != nil {
		t.Fatal(err)
	}
	// A second unit needs the CA: the leader must load it, and refuses.
	r := run(t, "up", "--dir", dir, "--units", "2", "--in-process", "--timeout", "15s")
	if r.code == 0 || !strings.Contains(r.stderr, "mode 0666") {
		t.Fatalf("up with a 0666 CA key: exit %d\n%s", r.code, r.stderr)
	}
	os.Chmod(key, 0o600) // no world-readable CA key left behind
}

// processesOf lists the live processes whose environment mentions dir (every agent and
// plugin of an `up` on dir has it in TLSRELAY_STATE_DIR), with their command lines.
func processesOf(dir string) map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(env), dir) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if strings.Contains(string(stat), ") Z ") {
			continue // a zombie is gone, only not yet reaped
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out[pid] = strings.ReplaceAll(string(cmdline), "\x00", " ")
	}
	return out
}

// killAllOf kills every process of dir and waits until they are gone, so that the
// test's directory can be removed.
func killAllOf(dir string) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		procs := processesOf(dir)
		if len(procs) == 0 {
			return
		}
		for pid := range procs {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// `up` killed with -9 while its agents and their plugins run leaves no process behind.
func TestUpKilledLeavesNoProcessBehind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(testbinBuild(t), "up", "--dir", dir, "--units", "3", "--timeout", "2m", "--log-level", "debug")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A TMPDIR of its own: agents killed with the host leave their plugins' sockets there.
	tmp, err := os.MkdirTemp("", "upkill-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out syncbuf.Buffer
	if os.Getenv("UPKILL_NULL") == "" {
		cmd.Stdout, cmd.Stderr = &out, &out
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { // whatever happens, nothing of this test survives it
		cmd.Process.Kill()
		cmd.Wait()
		killAllOf(dir)
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		procs := processesOf(dir)
		plugins := 0
		for _, c := range procs {
			if strings.Contains(c, "plugin serve") {
				plugins++
			}
		}
		if plugins >= 3 {
			t.Logf("%d processes of the group, %d of them plugins", len(procs), plugins)
			break
		}
		if time.Now().After(deadline) {
			logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, b)
			}
			ps, _ := exec.Command("ps", "-eo", "pid,ppid,pgid,stat,wchan:20,cmd").CombinedOutput()
			t.Fatalf("the group's plugins did not start: %v\n%s\n%s", procs, out.String(), ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for {
		left := processesOf(dir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after up was killed with -9, %d processes remain: %v", len(left), left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An agent whose signer plugin is stuck in a call ends within seconds of SIGTERM,
// leaving no plugin behind.
func TestSigtermEndsAgentWithStuckPlugin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := testbin.Build(t, testbin.Misbehave)
	config := fileWriter(t, dir)("agent.yaml", fmt.Sprintf(`unit: node/0
state_dir: %s/state
relation: {store: memory}
certificate: {output: {dir: %s/out}}
roles: {csr: cfssl, signer: bad}
plugins:
  bad: {command: %s, sha256: %s, env: [MISBEHAVE, TLSRELAY_MARK]}
`, dir, dir, bin, testbin.SHA256(t, bin)))
	cmd := exec.Command(testbinBuild(t), "agent", "--config", config, "--log-level", "debug")
	// TLSRELAY_MARK tags every process of this agent, the external plugin included.
	cmd.Env = append(os.Environ(), "MISBEHAVE=hang-call", "TLSRELAY_MARK="+dir)
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		killAllOf(dir)
	}()
	// Wait until the leader is in its signer's SignCSR (the plugin never answers).
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "created CSR") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent never created its CSR:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if procs := processesOf(dir); len(procs) < 3 { // the agent, cfssl, the stuck signer
		t.Fatalf("want the agent and two plugins running, have %v", procs)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(8 * time.Second):
		t.Fatalf("the agent did not end within 8 s of SIGTERM:\n%s", out.String())
	}
	time.Sleep(200 * time.Millisecond)
	if left := processesOf(dir); len(left) != 0 {
		t.Fatalf("processes left after the agent ended: %v", left)
	}
}
