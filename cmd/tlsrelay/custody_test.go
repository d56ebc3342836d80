package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// custodyGroup runs units on a signer whose CA never moves between leaders (the
// custodian test plugin: one CA directory for every unit, as a shared token or a CA
// service is), claiming custody (and ca_generate if generate).
func custodyGroup(t *testing.T, name, custody string, generate bool, seal bool, caKeys ...string) (*agents, relation.Observer, string, []string) {
	t.Helper()
	bin := testbin.Build(t, testbin.Custodian)
	caDir := filepath.Join(t.TempDir(), "ca")
	ca := strings.Join(append([]string{"remote_recheck: 2s"}, caKeys...), ", ")
	ag, obs, _ := embeddedGroup(t, name, 6*time.Second, fmt.Sprintf(`certificate: {validity: 1h}
ca: {%s}
roles: {csr: cfssl, signer: keeper}
plugins:
  keeper:
    command: %s
    sha256: %s
    env: [CUSTODIAN_CUSTODY, CUSTODIAN_GENERATE]
    config: {ca_dir: %q, custody: %s, generate: %t}
`, ca, bin, testbin.SHA256(t, bin), caDir, custody, generate), seal)
	env := []string{"CUSTODIAN_CUSTODY=" + custody, fmt.Sprintf("CUSTODIAN_GENERATE=%t", generate)}
	return ag, obs, caDir, env
}

func allAvailable(units ...string) func(relation.Snapshot) bool {
	return func(s relation.Snapshot) bool {
		for _, u := range units {
			if !available(s, u) {
				return false
			}
		}
		return true
	}
}

// A shared CA (every leader's signer reaches the same key, claimed by ca_shared): no
// ca_seal is needed; a new leader after a kill -9 signs with the same CA, importing
// nothing; `ca rotate` has the signer generate the next CA (ca_generate) and the group
// rotates to it; no agent exits; status tells the failover story that is true.
func TestSharedCustody(t *testing.T) {
	t.Parallel()
	ag, obs, _, env := custodyGroup(t, "shared", "shared", true, false)
	units := []string{"web/0", "web/1", "web/2"}
	for _, u := range units {
		ag.start(u, env...)
	}
	snap := awaitObs(t, obs, "3 units signed", time.Minute, allAvailable(units...))
	groupCA := caFingerprint(t, snap.LeaderData[protocol.KeyCA])
	st := runBinary(t, ag.bin, "status", "--config", ag.config)
	if !strings.Contains(st.stdout, "CA key shared by every leader's signer") {
		t.Errorf("status does not say the CA is shared:\n%s", st.stdout)
	}

	ag.signal(snap.Leader, syscall.SIGKILL)
	ag.start("web/3", env...)
	snap = awaitObs(t, obs, "a new leader signing web/3", time.Minute, func(s relation.Snapshot) bool {
		return s.Leader != "" && available(s, "web/3")
	})
	if got := caFingerprint(t, snap.LeaderData[protocol.KeyCA]); got != groupCA || !signedBy(t, snap, "web/3", groupCA) {
		t.Fatalf("after failover the group's CA is %s (want %s, the same), web/3 signed by it: %t", got, groupCA, signedBy(t, snap, "web/3", groupCA))
	}
	if strings.Contains(ag.logOf(snap.Leader), "imported") {
		t.Errorf("the new leader imported a CA:\n%s", ag.logOf(snap.Leader))
	}

	r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--timeout", "2m")
	if r.code != 0 || !strings.Contains(r.stdout, "done: the group signs with CA") {
		t.Fatalf("ca rotate with a shared signer that generates exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	running := ag.running()
	snap = awaitObs(t, obs, "every unit on the generated CA", time.Minute, func(s relation.Snapshot) bool {
		ca := protocol.TrustsOf(s.LeaderData[protocol.KeyCA])
		for _, u := range running {
			if !available(s, u) || s.Units[u][protocol.KeyTrusts] != ca {
				return false
			}
		}
		return ca != groupCA && !strings.Contains(ca, ",")
	})
	if !strings.Contains(ag.logOf(snap.Leader), "generated_by_signer=true") {
		t.Errorf("the leader did not have the signer generate the CA:\n%s", ag.logOf(snap.Leader))
	}
	assertAlive(t, ag, running...)
}

// A remote CA (ca_remote): `ca rotate` is refused at once with the reason; when the
// service moves to another CA, the leader sees it within ca.remote_recheck and the
// group follows it through a rotation. No agent exits.
func TestRemoteCustody(t *testing.T) {
	t.Parallel()
	ag, obs, caDir, env := custodyGroup(t, "remote", "remote", false, false)
	units := []string{"web/0", "web/1"}
	for _, u := range units {
		ag.start(u, env...)
	}
	snap := awaitObs(t, obs, "2 units signed", time.Minute, func(s relation.Snapshot) bool {
		return allAvailable(units...)(s) && s.Units[s.Leader][protocol.KeyCustody] == "remote"
	})
	first := caFingerprint(t, snap.LeaderData[protocol.KeyCA])
	r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--timeout", "30s")
	if r.code != 1 || !strings.Contains(r.stderr, "remote") || !strings.Contains(r.stderr, "rotate it at its service") {
		t.Fatalf("ca rotate with a remote CA exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	cert, key, err := certutil.NewCA("custodian CA, next", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := castore.Replace(caDir, castore.CA{CertPEM: cert, KeyPEM: key}); err != nil {
		t.Fatal(err)
	}
	next := caFingerprint(t, string(cert))
	awaitObs(t, obs, "the group on the service's new CA", 2*time.Minute, func(s relation.Snapshot) bool {
		for _, u := range units {
			if !available(s, u) || s.Units[u][protocol.KeyTrusts] != next {
				return false
			}
		}
		return protocol.TrustsOf(s.LeaderData[protocol.KeyCA]) == next
	})
	if next == first {
		t.Fatal("the CA did not change")
	}
	assertAlive(t, ag, units...)
}

// A signer that keeps its CA and can neither import nor generate one: ca_seal is refused
// when the agent starts (exit 2, naming ca_seal and the signer); without it, `ca rotate`
// is refused with the reason and the group signs on.
func TestLocalCustodyCannotRotate(t *testing.T) {
	t.Parallel()
	sealed, _, _, sealedEnv := custodyGroup(t, "sealedlocal", "local", false, true)
	sealed.start("web/0", sealedEnv...)
	if code := sealed.exitCode("web/0", 30*time.Second); code != 2 || !strings.Contains(sealed.logOf("web/0"), "ca_seal") ||
		!strings.Contains(sealed.logOf("web/0"), "custody local") {
		t.Fatalf("an agent with ca_seal and a signer that cannot export exited %d:\n%s", code, sealed.logOf("web/0"))
	}

	ag, obs, _, env := custodyGroup(t, "local", "local", false, false)
	units := []string{"web/0", "web/1"}
	for _, u := range units {
		ag.start(u, env...)
	}
	awaitObs(t, obs, "2 units signed", time.Minute, allAvailable(units...))
	r := runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--timeout", "30s")
	if r.code != 1 || !strings.Contains(r.stderr, "the leader refused CA rotation") || !strings.Contains(r.stderr, "neither import a CA nor generate one") {
		t.Fatalf("ca rotate with a signer that cannot rotate exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	ag.start("web/2", env...)
	awaitObs(t, obs, "web/2 signed after the refusal", time.Minute, allAvailable("web/2"))
	if st := runBinary(t, ag.bin, "status", "--config", ag.config); !strings.Contains(st.stdout, "last ca rotate refused") {
		t.Errorf("status does not show the refusal:\n%s", st.stdout)
	}
	assertAlive(t, ag, "web/0", "web/1", "web/2")
}

// assertAlive fails the test for each unit whose agent has exited.
func assertAlive(t *testing.T, ag *agents, units ...string) {
	t.Helper()
	for _, u := range units {
		if !processAlive(ag.pid(u)) {
			t.Errorf("%s's agent exited:\n%s", u, ag.logOf(u))
		}
	}
}

// processAlive: the process runs (it exists and is not a zombie).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// exitCode waits up to timeout for unit's agent to exit and returns its status (-1 if
// it is still running).
func (a *agents) exitCode(unit string, timeout time.Duration) int {
	a.mu.Lock()
	cmd := a.procs[unit]
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		a.mu.Lock()
		delete(a.procs, unit)
		a.mu.Unlock()
		return cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

// A rotation due because the CA nears its expiry, with a signer that can make no new CA
// (a remote CA, a local one that neither imports nor generates): no agent exits; the
// leader signs on (a new unit is signed), and status and the leader's log say the
// rotation is blocked, and why.
func TestAutomaticRotationThatCannotProceed(t *testing.T) {
	t.Parallel()
	for _, custody := range []string{"remote", "local"} {
		t.Run(custody, func(t *testing.T) {
			ag, obs, caDir, env := custodyGroup(t, "expiring"+custody, custody, false, false, "rotate_before: 720h")
			// The CA the signer holds: 355 days of its year gone, 10 days left.
			ca := pkitest.NewCA(t, "custodian CA", time.Now().Add(-355*24*time.Hour))
			if err := castore.Replace(caDir, castore.CA{CertPEM: []byte(ca.PEM), KeyPEM: pkitest.KeyPEM(t, ca.Key)}); err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{"web/0", "web/1"} {
				ag.startArgs(u, []string{"--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}, env...)
			}
			blocked := awaitObs(t, obs, "2 units signed, the rotation blocked", time.Minute, func(s relation.Snapshot) bool {
				return allAvailable("web/0", "web/1")(s) && s.LeaderData[protocol.KeyCARotationBlocked] != ""
			})
			gauge := find(scrape(t, metricsURL(t, ag, blocked.Leader)), "tlsrelay_ca_rotation_blocked", map[string]string{"unit": blocked.Leader})
			if gauge == nil || gauge.GetGauge().GetValue() != 1 {
				t.Errorf("the leader's tlsrelay_ca_rotation_blocked is %v, want 1", gauge)
			}
			ag.start("web/2", env...)
			awaitObs(t, obs, "web/2 signed while blocked", time.Minute, allAvailable("web/2"))
			st := runBinary(t, ag.bin, "status", "--config", ag.config)
			if !strings.Contains(st.stdout, "CA rotation blocked") || !strings.Contains(st.stdout, "expires at") {
				t.Errorf("status does not show the blocked rotation:\n%s", st.stdout)
			}
			if custody == "remote" {
				time.Sleep(5 * time.Second) // two loads of the remote CA again (remote_recheck 2s)
			}
			if n := strings.Count(ag.logOf(blocked.Leader), "a CA rotation is due but cannot proceed"); n != 1 {
				t.Errorf("the leader logged the blocked rotation %d times, want once:\n%s", n, ag.logOf(blocked.Leader))
			}
			assertAlive(t, ag, "web/0", "web/1", "web/2")
		})
	}
}
