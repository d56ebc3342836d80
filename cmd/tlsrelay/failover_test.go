package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/core/relation/relationtest"
	"github.com/tlsrelay/tlsrelay/internal/app/etcdaccess"
	"github.com/tlsrelay/tlsrelay/internal/app/status"
	"github.com/tlsrelay/tlsrelay/internal/app/verify"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// agents runs `tlsrelay agent` processes against one etcd, each unit with its own state
// directory (its own signer CA), so only the sealed CA in leader data can carry the CA
// from one leader to the next.
type agents struct {
	t      *testing.T
	bin    string
	dir    string
	tmp    string
	config string
	mu     sync.Mutex
	procs  map[string]*exec.Cmd
	// appendLogs keeps a unit's log across restarts of its agent.
	appendLogs bool
}

func newAgents(t *testing.T, endpoint string, ttl time.Duration) *agents {
	return newAgentsWith(t, fmt.Sprintf(`relation:
  name: failover
  store: etcd
  etcd: {endpoints: [%q], lease_ttl: %s}
`, endpoint, ttl), true)
}

// newAgentsWith writes yaml, plus a fresh ca_seal key if seal, as the agents' config.
func newAgentsWith(t *testing.T, yaml string, seal bool) *agents {
	dir := t.TempDir()
	if seal {
		key := make([]byte, caseal.KeySize)
		rand.Read(key)
		keyFile := filepath.Join(dir, "seal.key")
		if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600); err != nil {
			t.Fatal(err)
		}
		yaml += fmt.Sprintf("ca_seal: {key_file: %q}\n", keyFile)
	}
	config := filepath.Join(dir, "tlsrelay.yaml")
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// A short TMPDIR of their own: agents killed with -9 leave their plugins' sockets there.
	tmp, err := os.MkdirTemp("", "agents-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	a := &agents{t: t, bin: testbinBuild(t), dir: dir, tmp: tmp, config: config, procs: map[string]*exec.Cmd{}}
	t.Cleanup(a.dumpLogsOnFailure)
	t.Cleanup(a.killAll)
	return a
}

// dumpLogsOnFailure prints the tail of every agent's log when the test failed, so a
// failure in CI says what the agents were doing.
func (a *agents) dumpLogsOnFailure() {
	if !a.t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(a.dir, "*.log"))
	for _, name := range logs {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		a.t.Logf("last lines of %s:\n%s", filepath.Base(name), strings.Join(lines, "\n"))
	}
}

func (a *agents) unitDir(unit string) string {
	return filepath.Join(a.dir, protocol.UnitDNSName(unit))
}

// start runs unit's agent; env adds to (and overrides) its environment.
func (a *agents) start(unit string, env ...string) {
	a.t.Helper()
	a.startArgs(unit, []string{"--log-level", "info"}, env...)
}

// startArgs runs unit's agent with args after --config.
func (a *agents) startArgs(unit string, args []string, env ...string) {
	a.t.Helper()
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if a.appendLogs {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	log, err := os.OpenFile(filepath.Join(a.dir, protocol.UnitDNSName(unit)+".log"), flags, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(a.bin, append([]string{"agent", "--config", a.config}, args...)...)
	cmd.Env = append(os.Environ(), "TLSRELAY_UNIT="+unit,
		"TLSRELAY_STATE_DIR="+filepath.Join(a.dir, "state-"+protocol.UnitDNSName(unit)),
		"TLSRELAY_CERTIFICATE_OUTPUT_DIR="+a.unitDir(unit), "TMPDIR="+a.tmp)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = log, log
	// The agent and its plugins in a group of their own; killed if the test binary dies
	// (a go test timeout) rather than left running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.mu.Lock()
	a.procs[unit] = cmd
	a.mu.Unlock()
}

// startAs runs unit's agent with its own etcd user in relationName, its password in
// the credentials directory `etcd bootstrap` filled, leader-eligible or not.
func (a *agents) startAs(relationName, creds, unit string, eligible bool) {
	a.t.Helper()
	a.start(unit, "TLSRELAY_RELATION_ETCD_USERNAME="+etcd.UserName(relationName, unit),
		"TLSRELAY_RELATION_ETCD_PASSWORD_FILE="+etcdaccess.PasswordFile(creds, unit),
		fmt.Sprintf("TLSRELAY_RELATION_LEADER_ELIGIBLE=%v", eligible))
}

// pid is the process id of unit's agent.
func (a *agents) pid(unit string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.procs[unit].Process.Pid
}

// logOf is what unit's agent has logged so far.
func (a *agents) logOf(unit string) string {
	b, _ := os.ReadFile(filepath.Join(a.dir, protocol.UnitDNSName(unit)+".log"))
	return string(b)
}

// signalAgent signals the unit's agent process alone, not its process group.
func (a *agents) signalAgent(unit string, sig syscall.Signal) {
	a.mu.Lock()
	cmd := a.procs[unit]
	a.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		a.t.Fatalf("signal %s: %v", unit, err)
	}
}

// signal signals the unit's whole process group: the agent and its plugin processes.
func (a *agents) signal(unit string, sig syscall.Signal) {
	a.mu.Lock()
	cmd := a.procs[unit]
	a.mu.Unlock()
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		a.t.Fatalf("signal %s: %v", unit, err)
	}
	if sig == syscall.SIGKILL {
		cmd.Wait()
		a.mu.Lock()
		delete(a.procs, unit)
		a.mu.Unlock()
	}
}

func (a *agents) killAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for unit, cmd := range a.procs {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		delete(a.procs, unit)
	}
}

func (a *agents) running() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var units []string
	for u := range a.procs {
		units = append(units, u)
	}
	return units
}

// embeddedGroup starts an embedded etcd for relation name and agents on it whose lease
// TTL is ttl, with more YAML after the relation block, and follows the relation; it
// returns etcd's endpoint too. Everything stops when the test ends, the agents first.
func embeddedGroup(t *testing.T, name string, ttl time.Duration, more string, seal bool) (*agents, relation.Observer, string) {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ag := newAgentsWith(t, fmt.Sprintf(`relation:
  name: %s
  store: etcd
  etcd: {endpoints: [%q], lease_ttl: %s}
`, name, srv.Endpoint(), ttl)+more, seal)
	return ag, observe(t, etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: name}), srv.Endpoint()
}

// observe follows the whole relation, until the test ends.
func observe(t *testing.T, opts etcd.Options) relation.Observer {
	t.Helper()
	store, err := etcd.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	obs, err := store.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Close() })
	return obs
}

func awaitObs(t *testing.T, obs relation.Observer, what string, timeout time.Duration, cond func(relation.Snapshot) bool) relation.Snapshot {
	t.Helper()
	return relationtest.AwaitWithin(t, obs, what, timeout, cond)
}

func caFingerprint(t *testing.T, bundle string) string {
	t.Helper()
	certs, err := certutil.ParseCertificates([]byte(bundle))
	if err != nil {
		t.Fatalf("CA bundle: %v", err)
	}
	return caseal.Fingerprint(certs[0].Raw)
}

func available(s relation.Snapshot, unit string) bool {
	return s.Units[unit][protocol.KeyState] == string(protocol.StateCertificateAvailable) && s.Units[unit][protocol.KeySerial] != ""
}

// Five units as separate processes on etcd; the leader is killed with -9 while a CSR is
// pending; a new leader is elected within the lease TTL and signs it with the same CA; a
// unit added afterwards gets a certificate its old peers accept; every unit keeps a
// valid certificate throughout. Five times in a row.
func TestLeaderFailoverKeepsTheCA(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const ttl = 2 * time.Second
	// Every leader keeps the audit trail of this host, one file for them all.
	ag := newAgentsWith(t, fmt.Sprintf(`relation:
  name: failover
  store: etcd
  etcd: {endpoints: [%q], lease_ttl: %s}
audit: {path: %s}
`, srv.Endpoint(), ttl, filepath.Join(t.TempDir(), "audit.jsonl")), true)
	obs := observe(t, etcd.Options{Schema: protocol.Schema(), Endpoints: []string{srv.Endpoint()}, Relation: "failover"})

	next := 0
	add := func() string {
		unit := fmt.Sprintf("node/%d", next)
		next++
		ag.start(unit)
		return unit
	}
	for range 5 {
		add()
	}
	snap := awaitObs(t, obs, "5 units with certificates", time.Minute, func(s relation.Snapshot) bool {
		for _, u := range ag.running() {
			if !available(s, u) {
				return false
			}
		}
		return s.LeaderData[protocol.KeyCASealed] != ""
	})
	groupCA := caFingerprint(t, snap.LeaderData[protocol.KeyCA])

	for round := 1; round <= 5; round++ {
		leader := snap.Leader
		// Freeze the leader, so the next CSR is certainly pending when it dies.
		ag.signal(leader, syscall.SIGSTOP)
		pending := add()
		awaitObs(t, obs, pending+"'s CSR", 30*time.Second, func(s relation.Snapshot) bool {
			return s.Units[pending][protocol.KeyCSR] != ""
		})
		ag.signal(leader, syscall.SIGKILL)
		killed := time.Now()
		snap = awaitObs(t, obs, "a new leader", 30*time.Second, func(s relation.Snapshot) bool {
			return s.Leader != "" && s.Leader != leader
		})
		took := time.Since(killed)
		t.Logf("round %d: killed %s; %s leads after %s (lease TTL %s)", round, leader, snap.Leader, took.Round(time.Millisecond), ttl)
		if took > ttl+2*time.Second {
			t.Errorf("round %d: a new leader after %s, more than the lease TTL %s (and 2 s of slack)", round, took, ttl)
		}
		snap = awaitObs(t, obs, pending+"'s certificate from the new leader", 30*time.Second, func(s relation.Snapshot) bool {
			return available(s, pending)
		})
		if got := caFingerprint(t, snap.LeaderData[protocol.KeyCA]); got != groupCA {
			t.Fatalf("round %d: the group's CA changed from %.16s to %.16s", round, groupCA, got)
		}
		later := add()
		snap = awaitObs(t, obs, later+"'s certificate", 30*time.Second, func(s relation.Snapshot) bool { return available(s, later) })
		proveGroup(t, ag, groupCA, round)
		if round == 5 {
			checkStatus(t, ag, snap.Leader, groupCA)
			// Five leaders killed with -9, some mid-signing: still no certificate without
			// its record.
			units := map[string]string{}
			for _, u := range ag.running() {
				units[u] = ag.unitDir(u)
			}
			events := checkAuditTrail(t, ag.config, units)
			gained := 0
			for _, e := range events {
				if e.Event == audit.EventLeaderGained {
					gained++
				}
			}
			if gained < 6 {
				t.Errorf("%d leader_gained records for 6 leaders", gained)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(ag.dir, protocol.UnitDNSName(snap.Leader)+".log")); !strings.Contains(string(b), "imported the group's CA from its sealed copy") {
			t.Errorf("round %d: the new leader %s signed without importing the sealed CA:\n%s", round, snap.Leader, b)
		}
	}
}

// checkStatus: `tlsrelay status --json` on the running group names its leader and CA and
// every unit's certificate.
func checkStatus(t *testing.T, ag *agents, leader, groupCA string) {
	t.Helper()
	r := runBinary(t, ag.bin, "status", "--config", ag.config, "--json")
	if r.code != 0 {
		t.Fatalf("status exited %d: %s", r.code, r.stderr)
	}
	var g status.Group
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if g.Relation != "failover" || g.Leader != leader || g.CASHA256 != groupCA || !g.CASealed {
		t.Errorf("status: relation %q leader %q CA %.16s sealed %v; want failover, %s, %.16s, true", g.Relation, g.Leader, g.CASHA256, g.CASealed, leader, groupCA)
	}
	if g.Etcd == nil || g.Etcd.DBSize <= 0 || g.Etcd.QuotaBytes != 2<<30 || g.Etcd.Revision <= 0 {
		t.Errorf("status: etcd's database %+v, want its size, quota and revision", g.Etcd)
	}
	if len(g.Units) != len(ag.running()) {
		t.Errorf("status lists %d units, %d are running:\n%s", len(g.Units), len(ag.running()), r.stdout)
	}
	for _, u := range g.Units {
		if _, err := time.Parse(time.RFC3339, u.NotAfter); u.State != string(protocol.StateCertificateAvailable) || u.Serial == "" || err != nil {
			t.Errorf("status of %s: %+v", u.Unit, u)
		}
	}
}

// proveGroup: every running unit holds a certificate of the group's CA, and every pair
// completes mutual TLS.
func proveGroup(t *testing.T, ag *agents, groupCA string, round int) {
	t.Helper()
	var units []verify.Unit
	for _, u := range ag.running() {
		units = append(units, verify.Unit{Name: u, Dir: ag.unitDir(u), CommonName: protocol.UnitDNSName(u)})
		caPEM, err := os.ReadFile(filepath.Join(ag.unitDir(u), "ca.crt"))
		if err != nil {
			t.Fatalf("round %d: %s: %v", round, u, err)
		}
		if got := caFingerprint(t, string(caPEM)); got != groupCA {
			t.Fatalf("round %d: %s trusts CA %.16s, not the group's %.16s", round, u, got, groupCA)
		}
	}
	ids, err := verify.LoadAll(units)
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	n, err := verify.MutualTLS(context.Background(), ids, verify.AllPairs(len(ids)), 8)
	if err != nil || n != len(ids)*(len(ids)-1) {
		t.Fatalf("round %d: %d/%d handshakes: %v", round, n, len(ids)*(len(ids)-1), err)
	}
}
