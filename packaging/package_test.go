// Package packaging holds the Debian package's definition (nfpm.yaml and its scripts,
// built by scripts/release.sh) and the test that installs it.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The release script builds a static binary and a .deb; the .deb installs with dpkg on
// this machine (binary, systemd unit, example config, alert rules, the tlsrelay system
// user), `tlsrelay version` and `tlsrelay up` run from it, and purging it removes what
// it installed and the user, keeping /var/lib/tlsrelay (it may hold keys).
func TestReleaseBuildsADebThatInstallsRunsAndRemoves(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("installing a .deb needs root (CI runs the tests as root)")
	}
	if exec.Command("dpkg", "-s", "tlsrelay").Run() == nil {
		t.Fatal("a tlsrelay package is already installed here: this test would remove it")
	}
	_, stateBefore := os.Stat("/var/lib/tlsrelay")
	out := t.TempDir()
	const version = "v0.9.0-test.1"
	release := exec.Command("bash", "../scripts/release.sh", "--version", version, "--arch", "amd64", "--out", out)
	if b, err := release.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, b)
	}
	deb := filepath.Join(out, "tlsrelay_0.9.0~test.1_amd64.deb")
	sums := string(mustRead(t, filepath.Join(out, "SHA256SUMS")))
	if !strings.Contains(sums, "tlsrelay_0.9.0~test.1_amd64.deb") || !strings.Contains(sums, "tlsrelay-linux-amd64") {
		t.Fatalf("SHA256SUMS:\n%s", sums)
	}
	check := exec.Command("sha256sum", "--check", "--quiet", "SHA256SUMS")
	check.Dir = out
	if b, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, b)
	}
	if b, _ := exec.Command("file", filepath.Join(out, "tlsrelay-linux-amd64")).CombinedOutput(); len(b) > 0 && !strings.Contains(string(b), "statically linked") {
		t.Errorf("the binary is not static: %s", b)
	}

	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "tlsrelay").Run()
		if stateBefore != nil { // it was not there before the test
			os.RemoveAll("/var/lib/tlsrelay")
		}
	})
	run(t, "dpkg", "-i", deb)
	if v := run(t, "/usr/bin/tlsrelay", "version"); !strings.HasPrefix(v, "tlsrelay "+version+" (revision ") || !strings.Contains(v, "built ") {
		t.Errorf("the installed tlsrelay version says %q", v)
	}
	if u := run(t, "getent", "passwd", "tlsrelay"); !strings.Contains(u, "/var/lib/tlsrelay") {
		t.Errorf("the tlsrelay user: %q", u)
	}
	for path, mode := range map[string]os.FileMode{
		"/etc/tlsrelay/tlsrelay.yaml":                       0o640,
		"/lib/systemd/system/tlsrelay-agent.service":        0o644,
		"/usr/share/tlsrelay/prometheus/tlsrelay.rules.yml": 0o644,
		"/var/lib/tlsrelay":                                 os.ModeDir | 0o750,
		"/usr/share/tlsrelay/grafana/tlsrelay.json":         0o644,
	} {
		if info, err := os.Stat(path); err != nil || info.Mode()&(os.ModeDir|os.ModePerm) != mode {
			t.Errorf("%s: %v, mode %v; want %v", path, err, info.Mode(), mode)
		}
	}
	if unit := string(mustRead(t, "/lib/systemd/system/tlsrelay-agent.service")); !strings.Contains(unit, "ExecStart=/usr/bin/tlsrelay agent") {
		t.Error("the systemd unit does not run the installed binary")
	}
	// The installed example config loads (it names files the operator puts in place:
	// only that it parses and validates is asked here).
	if b, err := exec.Command("/usr/bin/tlsrelay", "status", "--config", "/etc/tlsrelay/tlsrelay.yaml", "--timeout", "1s").CombinedOutput(); strings.Contains(string(b), "config /etc/tlsrelay/tlsrelay.yaml:") {
		t.Errorf("the installed config does not load: %v\n%s", err, b)
	}
	up := exec.Command("/usr/bin/tlsrelay", "up", "--dir", filepath.Join(t.TempDir(), "up"))
	if b, err := up.CombinedOutput(); err != nil || !strings.Contains(string(b), "OK: 3 units up") {
		t.Fatalf("tlsrelay up from the package: %v\n%s", err, b)
	}

	// A unit's state, as the agent leaves it: purging must not take it.
	state := "/var/lib/tlsrelay/state-kept-by-purge"
	if err := os.WriteFile(state, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "dpkg", "--purge", "tlsrelay")
	for _, gone := range []string{"/usr/bin/tlsrelay", "/lib/systemd/system/tlsrelay-agent.service", "/etc/tlsrelay/tlsrelay.yaml"} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s is still there after purge", gone)
		}
	}
	if exec.Command("getent", "passwd", "tlsrelay").Run() == nil {
		t.Error("the tlsrelay user is still there after purge")
	}
	if _, err := os.Stat(state); err != nil {
		t.Error("purge removed /var/lib/tlsrelay, which may hold keys")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
