package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// A group signed by cfssl, then `up --backend openssl` on the same directory: the
// changed signer rotates the group to the openssl CA (it used to print OK while every
// unit kept its cfssl certificate), and the cfssl CA is gone from every bundle.
func TestChangedSignerRotatesTheGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if r := run(t, "up", "--units", "3", "--dir", dir); r.code != 0 {
		t.Fatalf("up exited %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// Why the group rotated is read from the audit trail: up's progress samples the
	// leader's status, and a rotation of 3 units can pass between two samples.
	trail := filepath.Join(dir, "audit.log")
	config := filepath.Join(t.TempDir(), "audit.yaml")
	if err := os.WriteFile(config, []byte("audit: {path: "+trail+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "up", "--backend", "openssl", "--units", "3", "--dir", dir, "--config", config)
	if r.code != 0 {
		t.Fatalf("up --backend openssl exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if b := mustRead(t, trail); !regexp.MustCompile(`"event":"rotation".*"reason":"the signer changed from cfssl to openssl"`).Match(b) {
		t.Errorf("the audit trail records no rotation for the changed signer:\n%s", b)
	}
	for _, unit := range []string{"node-0", "node-1", "node-2"} {
		cert := mustReadCert(t, filepath.Join(dir, unit, "tls.crt"))
		if cert.Issuer.CommonName != "tlsrelay openssl CA" {
			t.Errorf("%s: issued by %q, want the openssl CA", unit, cert.Issuer.CommonName)
		}
		bundle, err := certutil.ParseCertificates(mustRead(t, filepath.Join(dir, unit, "ca.crt")))
		if err != nil || len(bundle) != 1 || bundle[0].Subject.CommonName != "tlsrelay openssl CA" {
			t.Errorf("%s: ca.crt holds %d CAs (%v), want the openssl CA alone", unit, len(bundle), err)
		}
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustReadCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertificates(mustRead(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return certs[0]
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the real tlsrelay binary, as an operator would.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runBinary(t, testbinBuild(t), args...)
}

// runWith runs the real tlsrelay binary with env added to the test's environment: a
// test that gives its processes variables this way (not t.Setenv) can run in parallel.
func runWith(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runBinaryWith(t, testbinBuild(t), env, args...)
}

func testbinBuild(tb testing.TB) string { return testbin.Build(tb, testbin.Tlsrelay) }

func runBinary(tb testing.TB, bin string, args ...string) result {
	tb.Helper()
	return runBinaryWith(tb, bin, nil, args...)
}

func runBinaryWith(tb testing.TB, bin string, env []string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		tb.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code}
}

func TestUpIssuesAndProvesAGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := run(t, "up", "--units", "4", "--dir", dir, "--log-level", "trace")
	if r.code != 0 {
		t.Fatalf("up exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// memory: up, 4 agents and their 4 plugins, counted while they run.
	for _, want := range []string{"UNIT", "NOT AFTER", "node/3", "4/4 mutual-TLS handshakes (ring", "OK: 4 units up", "time: etcd start", "memory: 9 processes"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "4 agent processes started") || !strings.Contains(r.stderr, "embedded etcd ready") {
		t.Errorf("up did not run an embedded etcd and one agent process per unit:\n%s", r.stderr)
	}
	// Each unit ran as its own agent process, whose plugins ran as child processes: each
	// agent's log (trace level) shows its own plugin start.
	var logs string
	for i := range 4 {
		b, err := os.ReadFile(filepath.Join(dir, "logs", fmt.Sprintf("node-%d.log", i)))
		if err != nil {
			t.Fatalf("agent log of node/%d: %v", i, err)
		}
		if !regexp.MustCompile(`plugin ready: plugin=cfssl .* pid=[0-9]+`).Match(b) {
			t.Errorf("node/%d's agent started no plugin child process:\n%.2000s", i, b)
		}
		logs += string(b)
	}
	if strings.Contains(r.stderr+r.stdout+logs, "PRIVATE KEY") {
		t.Fatal("private key material in tlsrelay's output or logs")
	}
	for i := range 4 {
		unitDir := filepath.Join(dir, "node-"+string(rune('0'+i)))
		out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(unitDir, "ca.crt"), filepath.Join(unitDir, "tls.crt")).CombinedOutput()
		if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), ": OK") {
			t.Errorf("openssl verify node/%d: %v\n%s", i, err, out)
		}
		info, err := os.Stat(filepath.Join(unitDir, "tls.key"))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("node/%d tls.key: %v, mode %v", i, err, info.Mode().Perm())
		}
	}
	// A second run over the same directory keeps the CA and the valid certificates.
	before, _ := os.ReadFile(filepath.Join(dir, "node-1", "tls.crt"))
	if r := run(t, "up", "--units", "4", "--dir", dir); r.code != 0 {
		t.Fatalf("second up exited %d: %s", r.code, r.stderr)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "node-1", "tls.crt"))
	if !bytes.Equal(before, after) {
		t.Error("a second up re-issued a valid certificate")
	}
}

func TestUpInOneProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := run(t, "up", "--store", "memory", "--units", "3", "--dir", dir, "--all-pairs")
	if r.code != 0 || !strings.Contains(r.stdout, "6/6 mutual-TLS handshakes (all pairs") || !strings.Contains(r.stderr, "store=memory") {
		t.Fatalf("up --store memory exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd")); err == nil {
		t.Error("up --store memory started an etcd")
	}
}

// --units-per-process: units share agent processes, each with its own plugin host; the
// group is the same group (one CA, every unit its own certificate).
func TestUpWithUnitsSharingProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := run(t, "up", "--units", "5", "--units-per-process", "2", "--dir", dir, "--log-level", "debug")
	if r.code != 0 || !strings.Contains(r.stdout, "5/5 mutual-TLS handshakes (ring") || !strings.Contains(r.stdout, "one CA bundle") {
		t.Fatalf("up --units-per-process 2 exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "3 agent processes started for 5 units") {
		t.Errorf("want 3 agent processes for 5 units:\n%s", r.stderr)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	names := []string{}
	for _, l := range logs {
		names = append(names, filepath.Base(l))
	}
	slices.Sort(names)
	if want := []string{"node-0+1.log", "node-2+1.log", "node-4.log"}; !slices.Equal(names, want) {
		t.Errorf("agent logs %v, want %v", names, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "logs", "node-0+1.log"))
	if n := len(regexp.MustCompile(`plugin ready: plugin=cfssl`).FindAll(b, -1)); n != 1 {
		t.Errorf("the process of node/0 and node/1 started %d cfssl plugins, want 1 shared", n)
	}
}

func TestUpUnitsFlagIsChecked(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ units, want string }{
		{"db/0", `"db/0" is not NAME=DIR`},
		{"db/0=/a,=/b", `"=/b" is not NAME=DIR`},
	} {
		r := run(t, "agent", "--units", tt.units)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("agent --units %q exited %d: %s; want an error containing %s", tt.units, r.code, r.stderr, tt.want)
		}
	}
}

// --in-process: every unit in one process with one plugin host, through the embedded etcd.
func TestUpInProcessOnEtcd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := run(t, "up", "--in-process", "--units", "5", "--dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "5/5 mutual-TLS handshakes (ring") || !strings.Contains(r.stderr, "store=embedded") ||
		!strings.Contains(r.stdout, "one CA bundle") {
		t.Fatalf("up --in-process exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd", "member")); err != nil {
		t.Errorf("up --in-process did not go through the embedded etcd: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "logs")); err == nil {
		t.Error("up --in-process started agent processes (DIR/logs exists)")
	}
}

func TestUpWithEachBackend(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"openssl", "easyrsa"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			r := run(t, "up", "--backend", backend, "--units", "3", "--dir", dir)
			if r.code != 0 || !strings.Contains(r.stdout, "3/3 mutual-TLS handshakes (ring") || !strings.Contains(r.stderr, "signer="+backend) {
				t.Fatalf("up --backend %s exited %d\nstdout:\n%s\nstderr:\n%s", backend, r.code, r.stdout, r.stderr)
			}
			for _, unit := range []string{"node-0", "node-1", "node-2"} {
				out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, unit, "ca.crt"), filepath.Join(dir, unit, "tls.crt")).CombinedOutput()
				if err != nil {
					t.Errorf("openssl verify %s: %v: %s", unit, err, out)
				}
			}
		})
	}
	if r := run(t, "up", "--backend", "vault", "--dir", t.TempDir()); r.code == 0 || !strings.Contains(r.stderr, `--backend vault: `) {
		t.Fatalf("up --backend vault: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestSignOneCSR(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opensslCSR := func(name, subj, san string) string {
		t.Helper()
		csr := filepath.Join(dir, name+".csr")
		if out, err := exec.Command("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", filepath.Join(dir, name+".key"), "-subj", subj, "-addext", "subjectAltName="+san, "-out", csr).CombinedOutput(); err != nil {
			t.Fatalf("openssl req: %v: %s", err, out)
		}
		return csr
	}
	csr := opensslCSR("ops", "/CN=ops-1", "DNS:ops-1") // the default common name: the unit's DNS name
	state := filepath.Join(dir, "state")
	for _, backend := range []string{"cfssl", "openssl", "easyrsa"} {
		t.Run(backend, func(t *testing.T) {
			out := filepath.Join(dir, backend+".crt")
			args := []string{"sign", "--csr", csr, "--unit", "ops/1", "--profile", "client", "--backend", backend, "--state-dir", state, "--out", out}
			// A state directory without this signer's CA is refused, and left as it was.
			r := run(t, args...)
			if _, err := os.Stat(filepath.Join(state, backend)); r.code == 0 || !strings.Contains(r.stderr, "holds no CA of "+backend) || !strings.Contains(r.stderr, "--init-ca") || err == nil {
				t.Fatalf("sign without a CA: exit %d (%v): %s", r.code, err, r.stderr)
			}
			if r = run(t, append(args, "--init-ca")...); r.code != 0 || !strings.Contains(r.stderr, `signed "ops-1"`) {
				t.Fatalf("sign --init-ca exited %d: %s", r.code, r.stderr)
			}
			// The CA it started is the one the next sign uses, without --init-ca.
			if r = run(t, args...); r.code != 0 {
				t.Fatalf("sign with the CA in place exited %d: %s", r.code, r.stderr)
			}
			caFile := filepath.Join(state, backend, "ca.pem")
			if backend == "easyrsa" {
				caFile = filepath.Join(state, backend, "pki", "ca.crt")
			}
			v, err := exec.Command("openssl", "verify", "-CAfile", caFile, "-purpose", "sslclient", out).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl verify: %v: %s", err, v)
			}
		})
	}
	garbage := filepath.Join(dir, "garbage.csr")
	os.WriteFile(garbage, []byte("not a csr"), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--csr", garbage}, "garbage.csr"},
		{[]string{"--csr", filepath.Join(dir, "missing.csr")}, "missing.csr"},
		{[]string{"--csr", csr, "--profile", "root"}, `"root" is not one of`},
		// The policy, as the leader applies it: a unit's name only with --unit, and
		// only that unit's.
		{[]string{"--csr", csr}, `common name "ops-1" names a unit; sign it with --unit`},
		{[]string{"--csr", csr, "--unit", "ops/2"}, `it may ask only for "ops-2"`},
		{[]string{"--csr", opensslCSR("upper", "/CN=ops-1", "DNS:OPS-2"), "--unit", "ops/1"}, `"OPS-2", the name of unit ops/2`},
		{[]string{"--csr", opensslCSR("local", "/CN=ops-1", "DNS:localhost"), "--unit", "ops/1"}, `"localhost" is not allowed`},
		{[]string{"--csr", csr, "--unit", "ops/1", "--validity", "100000h"}, "policy.max_validity"},
	} {
		r := run(t, append([]string{"sign", "--state-dir", state}, tt.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("sign %v: exit %d, stderr %q, want %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// fileWriter returns a function that writes a file in dir and returns its path.
func fileWriter(t *testing.T, dir string) func(name, content string) string {
	return func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

func TestUpRefusesBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"malformed YAML", []string{"--config", write("bad.yaml", "certificate:\n  key: [oops\n")},
			[]string{"bad.yaml", "malformed YAML", "line"}},
		{"unknown backend", []string{"--config", write("unknown.yaml", "roles: {signer: vault}\n")},
			[]string{"unknown.yaml", "roles.signer", `unknown backend "vault"`}},
		{"plugin path that does not exist", []string{"--config", write("missing.yaml",
			"roles: {csr: ext}\nplugins: {ext: {command: /nonexistent/plugin, sha256: "+strings.Repeat("0", 64)+"}}\n")},
			[]string{"missing.yaml", "plugins.ext.command", "/nonexistent/plugin"}},
		{"config file that does not exist", []string{"--config", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml", "no such file"}},
		{"zero units", []string{"--units", "0"}, []string{"--units must be at least 1"}},
		{"a backend that cannot sign", []string{"--backend", "barbican"}, []string{"--backend barbican", "signs nothing", "cfssl, easyrsa, openssl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, append([]string{"up", "--dir", t.TempDir()}, tt.args...)...)
			if r.code == 0 {
				t.Fatalf("up succeeded on bad input:\n%s", r.stdout)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Fatalf("up panicked:\n%s", r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

func TestPluginServeByHandIsRefused(t *testing.T) {
	t.Parallel()
	r := run(t, "plugin", "serve", "cfssl")
	if r.code == 0 || !strings.Contains(r.stderr, "not by hand") {
		t.Fatalf("plugin serve by hand: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, "plugin", "serve", "vault")
	if r.code == 0 || !strings.Contains(r.stderr, `no built-in backend is named "vault"`) {
		t.Fatalf("unknown built-in: exit %d, stderr %q", r.code, r.stderr)
	}
}

// version names the build: a release's version and build time (ldflags, as
// scripts/release.sh sets them), the VCS revision the checkout is at, the toolchain;
// the built-in plugins report the same version.
func TestVersion(t *testing.T) {
	t.Parallel()
	if r := run(t, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "tlsrelay ") || !strings.Contains(r.stdout, "backend protocol 1") {
		t.Fatalf("version: %+v", r)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD (the tests run in a checkout): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tlsrelay")
	const pkg = "github.com/tlsrelay/tlsrelay/internal/buildinfo"
	build := exec.Command("go", "build", "-buildvcs=true", "-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".buildTime=2026-12-02T10:00:00Z", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r := runBinary(t, bin, "version")
	want := "tlsrelay v9.8.7 (revision " + string(head[:12])
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "built 2026-12-02T10:00:00Z") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Fatalf("version = %q, want it to start %q and name the build time and %s", r.stdout, want, runtime.Version())
	}
	config := fileWriter(t, t.TempDir())("p.yaml", "roles: {csr: cfssl, signer: openssl}\n")
	r = runBinary(t, bin, "plugins", "--config", config)
	for _, name := range []string{"cfssl", "openssl"} {
		if !strings.Contains(lineWith(r.stdout, name+" "), " v9.8.7 ") {
			t.Errorf("plugins lists %s without the build's version:\n%s", name, r.stdout)
		}
	}
}

// `tlsrelay plugins` lists every configured plugin with its version, capabilities, roles
// and checksum, a plugin that cannot start with the reason; `plugins sha256 PATH`
// prints the line to pin a binary.
func TestPluginsCommand(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, testbin.CfsslPlugin)
	sum := testbin.SHA256(t, bin)
	dir := t.TempDir()
	config := fileWriter(t, dir)("p.yaml", "roles: {csr: ext, signer: cfssl}\nplugins: {ext: {command: "+bin+", sha256: "+sum+"}}\n")
	r := run(t, "plugins", "--config", config)
	if r.code != 0 {
		t.Fatalf("plugins: exit %d\n%s", r.code, r.stderr)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = line
		}
	}
	for name, want := range map[string][]string{
		"ext":      {bin, "create_csr,sign_csr,ca", "csr", sum},
		"cfssl":    {"built-in", "signer"},
		"barbican": {"cannot start", "config.auth"},
	} {
		for _, w := range want {
			if !strings.Contains(rows[name], w) {
				t.Errorf("row %s lacks %q:\n%s", name, w, r.stdout)
			}
		}
	}
	r = run(t, "plugins", "sha256", bin)
	if r.code != 0 || !strings.Contains(r.stdout, "sha256: "+sum) {
		t.Fatalf("plugins sha256: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// `agent --once` converges, writes the unit's files and exits 0; run again it finds
// the certificate current and exits at once keeping it; a unit that cannot converge
// (no one may lead) exits 1 at --timeout, saying so.
func TestAgentOnce(t *testing.T) {
	dir := t.TempDir()
	config := fileWriter(t, dir)("once.yaml", fmt.Sprintf("unit: job/0\nstate_dir: %s/state\nrelation: {store: memory}\ncertificate: {output: {dir: %s/out}}\n", dir, dir))
	r := run(t, "agent", "--config", config, "--once")
	if r.code != 0 {
		t.Fatalf("agent --once: exit %d\n%s", r.code, r.stderr)
	}
	cert, err := os.ReadFile(filepath.Join(dir, "out", "tls.crt"))
	if err != nil {
		t.Fatalf("agent --once wrote no certificate: %v", err)
	}
	if r = run(t, "agent", "--config", config, "--once"); r.code != 0 {
		t.Fatalf("second agent --once: exit %d\n%s", r.code, r.stderr)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "out", "tls.crt")); string(again) != string(cert) {
		t.Error("a second --once replaced a current certificate")
	}
	t.Setenv("TLSRELAY_RELATION_LEADER_ELIGIBLE", "false")
	t.Setenv("TLSRELAY_UNIT", "job/1")
	t.Setenv("TLSRELAY_CERTIFICATE_OUTPUT_DIR", filepath.Join(dir, "out1"))
	r = run(t, "agent", "--config", config, "--once", "--timeout", "2s")
	if r.code != 1 || !strings.Contains(r.stderr, "job/1: no current certificate within --timeout 2s") {
		t.Fatalf("agent --once without a leader: exit %d\n%s", r.code, r.stderr)
	}
}

// The systemd unit in configs/ runs a command and flags this binary has, and does not
// restart into the exit status of a permanent failure.
func TestSystemdUnitExample(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../configs/tlsrelay-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=\S+ (agent .*)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("no ExecStart running `tlsrelay agent`")
	}
	help := run(t, "agent", "--help")
	for _, f := range regexp.MustCompile(`--[a-z-]+`).FindAllString(m[1], -1) {
		if !strings.Contains(help.stdout, f) {
			t.Errorf("ExecStart uses %s, which `tlsrelay agent` does not have", f)
		}
	}
	if !strings.Contains(string(b), "ExecReload=/bin/kill -HUP $MAINPID") {
		t.Error("systemctl reload does not send the agent SIGHUP")
	}
	if !strings.Contains(string(b), fmt.Sprintf("RestartPreventExitStatus=%d", fault.ExitPermanent)) {
		t.Errorf("the unit restarts into exit status %d (a permanent failure)", fault.ExitPermanent)
	}
}
