package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/internal/app/status"
	"github.com/tlsrelay/tlsrelay/internal/testkit/netlab"
)

// A group as hosts run it: four hosts on a switch, a 3-member etcd over TLS on the first
// three, one agent on each. Hosts are cut off by detaching their switch port.
//   - (c)(d) The leader's host, an etcd member's too, is cut: the old leader stops acting
//     as leader before a new one is elected, and no unit on another host loses its
//     lease (their clients leave the cut member within the TTL). Then each other
//     member's host in turn: a unit's lease keepalives go to one member, so over the
//     three cuts every unit's member is cut at least once while the unit is not.
//   - (e) A fifth of all packets lost for a while changes nothing.
//   - (f) A minority partition (hosts 1 and 4) for less than the delay: its units come
//     back with their certificates; the majority's keep their leases.
//   - (b) A host cut for less than ca.revoke_departed_after: its unit comes back with its
//     certificate, which is neither revoked nor signed again.
//   - (a) A host cut for longer: the serial on its disk is in the CRL every unit holds,
//     `openssl verify -crl_check` refuses it, and the unit renews once back.
func TestPartitionedHosts(t *testing.T) {
	t.Parallel() // mostly waiting out TTLs and delays, each measured on its own clock
	lab := netlab.New(t, 4)
	dir := t.TempDir()
	cluster := lab.StartEtcd(dir, 1, 2, 3)
	// The default TTL (docs/SECURITY.md: at 6s, a cut that also cost etcd its raft
	// leader once let a lease on a healthy host expire). The delay outlasts the cuts of
	// (c)(d), so only (a) revokes anything.
	const ttl, delay = 10 * time.Second, 40 * time.Second
	p := newPartitionedGroup(t, lab, dir, fmt.Sprintf(`relation:
  name: lab
  store: etcd
  etcd:
    endpoints: [%s]
    tls: {ca_file: %q, cert_file: %q, key_file: %q}
    lease_ttl: %s
ca: {revoke_departed_after: %s}
`, strings.Join(cluster.Endpoints, ", "), cluster.CAFile, cluster.CertFile, cluster.KeyFile, ttl, delay))
	p.start(1)
	p.await("web/1 to lead", 2, time.Minute, func(g status.Group) bool { return g.Leader == "web/1" })
	for i := 2; i <= 4; i++ {
		p.start(i)
	}
	p.await("four units with certificates", 2, 2*time.Minute, func(g status.Group) bool { return p.available(g, 1, 2, 3, 4) })

	// (c)(d) Cut the leader's host, which holds an etcd member.
	lab.Cut(1)
	g := p.await("a new leader", 2, time.Minute, func(g status.Group) bool { return g.Leader != "" && g.Leader != "web/1" })
	// It stops acting when its tenure lapses, or sooner when its client learns the
	// lease is gone (its member, cut off, answers at once that it has no leader).
	stepped := append(p.logged(1, "acting as leader no more"), p.logged(1, "leadership lost with the lease")...)
	slices.SortFunc(stepped, time.Time.Compare)
	elected := p.logged(unitNumber(t, g.Leader), "relation: elected leader")
	if len(stepped) == 0 || len(elected) == 0 || !stepped[0].Before(elected[len(elected)-1]) {
		t.Errorf("the cut leader stopped acting as leader at %v, %s was elected at %v: want the first before", stepped, g.Leader, elected)
	}
	p.noLeaseLost(2*ttl, 1)
	lab.Heal(1)
	p.await("web/1 back", 2, time.Minute, func(g status.Group) bool { return p.available(g, 1, 2, 3, 4) })
	// A unit back from a cut may hold a new lease, whose first renewal the etcd client
	// waits for a shorter while than a TTL: a member cut within that while can cost it
	// the lease (docs/SECURITY.md). The next cut waits until such a lease has had its
	// first renewals answered; what is tested is a cut of a settled group.
	settle := func() { time.Sleep(ttl / 2) }
	for _, member := range []int{2, 3} {
		settle()
		lab.Cut(member)
		p.noLeaseLost(2*ttl, member)
		lab.Heal(member)
		p.await(fmt.Sprintf("web/%d back", member), 4, time.Minute, func(g status.Group) bool { return p.available(g, 1, 2, 3, 4) })
	}

	// (e) A fifth of every host's packets lost for a while: nothing is revoked or signed
	// (the run's totals below), and the group is whole afterwards.
	for i := 1; i <= 4; i++ {
		lab.Lose(i, 0.2)
	}
	time.Sleep(4 * ttl)
	for i := 1; i <= 4; i++ {
		lab.Mend(i)
	}
	p.await("the group whole after the loss", 2, time.Minute, func(g status.Group) bool { return g.Leader != "" && p.available(g, 1, 2, 3, 4) })

	// (f) A minority partition shorter than the delay: hosts 1 and 4 (an etcd member
	// among them) apart from 2 and 3. The minority's units lose their leases (their
	// member has no quorum) and come back with their certificates; the majority's keep
	// theirs, and the leader is one of them. Nothing is revoked or signed (the totals).
	before := map[int]string{}
	for i := 1; i <= 4; i++ {
		before[i] = p.serialOnDisk(i)
	}
	lab.Split(1, 4)
	p.await("the minority's units gone, a leader in the majority", 2, time.Minute, func(g status.Group) bool {
		return (g.Leader == "web/2" || g.Leader == "web/3") && unitOf(g, "web/1").Unit == "" && unitOf(g, "web/4").Unit == ""
	})
	p.noLeaseLost(ttl, 1, 4)
	healed := time.Now()
	lab.Unsplit()
	p.await("the minority back with its certificates", 2, time.Minute, func(g status.Group) bool {
		for i := 1; i <= 4; i++ {
			if !p.available(g, i) || unitOf(g, fmt.Sprintf("web/%d", i)).Serial != before[i] {
				return false
			}
		}
		return g.Leader != ""
	})
	time.Sleep(ttl)
	p.leasesKept(healed, 1, 4) // the minority's etcd member rejoins without an election (pre-vote)

	// (b) A cut shorter than the delay: nothing revoked, nothing signed again.
	held := p.serialOnDisk(4)
	signed := len(p.loggedAll("signed CSR", "web/4"))
	lab.Cut(4)
	p.await("web/4's lease to expire", 2, time.Minute, func(g status.Group) bool { return !p.available(g, 4) })
	time.Sleep(ttl)
	lab.Heal(4)
	p.await("web/4 back with its certificate", 2, time.Minute, func(g status.Group) bool {
		return p.available(g, 4) && unitOf(g, "web/4").Serial == held
	})
	time.Sleep(delay) // past the delay, counted from the departure
	if slices.Contains(p.crlOnDisk(2), held) || p.serialOnDisk(4) != held || len(p.loggedAll("signed CSR", "web/4")) != signed {
		t.Fatalf("after a short cut: CRL %v, web/4 holds %s (held %s), certificates signed for it %d (were %d)",
			p.crlOnDisk(2), p.serialOnDisk(4), held, len(p.loggedAll("signed CSR", "web/4")), signed)
	}

	// (a) A cut past the delay: the serial on its disk is revoked; it renews once back.
	lab.Cut(4)
	deadline := time.Now().Add(ttl + delay + 30*time.Second)
	for !slices.Contains(p.crlOnDisk(2), held) {
		if time.Now().After(deadline) {
			t.Fatalf("web/4's serial %s never reached the CRL web/2 holds: %v", held, p.crlOnDisk(2))
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.await("status to list web/4 as departed and revoked", 2, 10*time.Second, func(g status.Group) bool {
		return slices.ContainsFunc(g.Departed, func(d status.Departed) bool { return d.Unit == "web/4" && slices.Contains(d.Revoked, held) })
	})
	out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", filepath.Join(p.unitDir(2), "ca.crt"),
		"-CRLfile", filepath.Join(p.unitDir(2), "ca.crl"), filepath.Join(p.unitDir(4), "tls.crt")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate revoked") {
		t.Fatalf("openssl verify -crl_check of web/4's certificate: %v\n%s", err, out)
	}
	lab.Heal(4)
	p.await("web/4 renewed", 2, 2*time.Minute, func(g status.Group) bool {
		return p.available(g, 4) && unitOf(g, "web/4").Serial != held
	})
	if now := p.serialOnDisk(4); now == held {
		t.Fatalf("web/4 still holds its revoked certificate %s", held)
	}

	// Over the whole run: every certificate signed was installed (four, and web/4's
	// renewal), and the CRL lists exactly the serial of the unit away past the delay.
	signedAll, installed := p.loggedAll("signed CSR"), p.loggedAll("installed certificate")
	if len(signedAll) != 5 || len(installed) != 5 {
		t.Errorf("%d certificates signed and %d installed over the run, want 5 and 5", len(signedAll), len(installed))
	}
	if crl := p.crlOnDisk(2); !slices.Equal(crl, []string{held}) {
		t.Errorf("the CRL lists %v, want exactly [%s]", crl, held)
	}
}

// noLeaseLost waits for d, then checks that no agent on a host other than those cut
// lost its lease meanwhile.
func (p *partitionedGroup) noLeaseLost(d time.Duration, cut ...int) {
	p.t.Helper()
	since := time.Now()
	time.Sleep(d)
	p.leasesKept(since, cut...)
}

// leasesKept checks that no agent on a host other than those cut logged a lost lease
// since then.
func (p *partitionedGroup) leasesKept(since time.Time, cut ...int) {
	p.t.Helper()
	for i := 1; i <= len(p.lab.Hosts); i++ {
		if slices.Contains(cut, i) {
			continue
		}
		for _, at := range p.logged(i, "lease lost") {
			if at.After(since) {
				p.t.Errorf("web/%d, on a healthy host, lost its lease at %s (hosts %v cut off, checked since %s)",
					i, at.Format(time.StampMilli), cut, since.Format(time.StampMilli))
			}
		}
	}
}

// partitionedGroup is one tlsrelay agent on each host of a lab.
type partitionedGroup struct {
	t      *testing.T
	lab    *netlab.Lab
	bin    string
	dir    string
	config string
}

func newPartitionedGroup(t *testing.T, lab *netlab.Lab, dir, yaml string) *partitionedGroup {
	key := make([]byte, caseal.KeySize)
	rand.Read(key)
	keyFile := filepath.Join(dir, "seal.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "tlsrelay.yaml")
	if err := os.WriteFile(config, []byte(yaml+fmt.Sprintf("ca_seal: {key_file: %q}\n", keyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &partitionedGroup{t: t, lab: lab, bin: testbinBuild(t), dir: dir, config: config}
	t.Cleanup(p.dumpLogsOnFailure)
	return p
}

func (p *partitionedGroup) unitDir(i int) string {
	return filepath.Join(p.dir, fmt.Sprintf("web-%d", i))
}
func (p *partitionedGroup) logFile(i int) string {
	return filepath.Join(p.dir, fmt.Sprintf("web-%d.log", i))
}

// start runs web/i's agent on host i, logging JSON.
func (p *partitionedGroup) start(i int) {
	p.t.Helper()
	log, err := os.Create(p.logFile(i))
	if err != nil {
		p.t.Fatal(err)
	}
	defer log.Close()
	// A short TMPDIR of its own: plugin sockets live there, and a socket's path is short.
	tmp, err := os.MkdirTemp("", "lab-")
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { os.RemoveAll(tmp) })
	cmd := p.lab.Command(i, p.bin, "agent", "--config", p.config, "--log-format", "json", "--log-level", "info")
	cmd.Env = append(os.Environ(), fmt.Sprintf("TLSRELAY_UNIT=web/%d", i),
		"TLSRELAY_STATE_DIR="+filepath.Join(p.dir, fmt.Sprintf("state-%d", i)),
		"TLSRELAY_CERTIFICATE_OUTPUT_DIR="+p.unitDir(i), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = log, log
	p.lab.Start(cmd)
}

// status reads the group with `tlsrelay status --json` run on host i.
func (p *partitionedGroup) status(i int) (status.Group, error) {
	var g status.Group
	out, err := p.lab.Command(i, p.bin, "status", "--config", p.config, "--json", "--timeout", "5s").Output()
	if err != nil {
		return g, err
	}
	return g, json.Unmarshal(out, &g)
}

// await polls the status from host i until cond holds.
func (p *partitionedGroup) await(what string, i int, timeout time.Duration, cond func(status.Group) bool) status.Group {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g, err := p.status(i)
		if err == nil && cond(g) {
			return g
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting for %s: not within %s (last status %+v, %v)", what, timeout, g, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// available: each of web/i holds a current certificate.
func (p *partitionedGroup) available(g status.Group, units ...int) bool {
	for _, i := range units {
		u := unitOf(g, fmt.Sprintf("web/%d", i))
		if u.State != string(protocol.StateCertificateAvailable) || u.Serial == "" {
			return false
		}
	}
	return true
}

func unitOf(g status.Group, unit string) status.Unit {
	for _, u := range g.Units {
		if u.Unit == unit {
			return u
		}
	}
	return status.Unit{}
}

func unitNumber(t *testing.T, unit string) int {
	var i int
	if _, err := fmt.Sscanf(unit, "web/%d", &i); err != nil {
		t.Fatalf("unit %q: %v", unit, err)
	}
	return i
}

func (p *partitionedGroup) serialOnDisk(i int) string {
	return mustReadCert(p.t, filepath.Join(p.unitDir(i), "tls.crt")).SerialNumber.Text(16)
}

// crlOnDisk lists the serials of web/i's ca.crl.
func (p *partitionedGroup) crlOnDisk(i int) []string {
	b, err := os.ReadFile(filepath.Join(p.unitDir(i), "ca.crl"))
	if err != nil {
		return nil
	}
	return pemCRLSerials(p.t, string(b))
}

// logged lists the times web/i's agent logged a message containing text.
func (p *partitionedGroup) logged(i int, text string, fields ...string) []time.Time {
	f, err := os.Open(p.logFile(i))
	if err != nil {
		return nil
	}
	defer f.Close()
	var at []time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		msg, _ := line["@message"].(string)
		if !strings.Contains(msg, text) || !hasValues(line, fields) {
			continue
		}
		if ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(line["@timestamp"])); err == nil {
			at = append(at, ts)
		}
	}
	return at
}

// loggedAll is logged over every agent.
func (p *partitionedGroup) loggedAll(text string, fields ...string) []time.Time {
	var at []time.Time
	for i := 1; i <= len(p.lab.Hosts); i++ {
		at = append(at, p.logged(i, text, fields...)...)
	}
	return at
}

// hasValues: every one of values is the value of some field of line.
func hasValues(line map[string]any, values []string) bool {
	for _, v := range values {
		found := false
		for _, x := range line {
			if s, ok := x.(string); ok && s == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (p *partitionedGroup) dumpLogsOnFailure() {
	if !p.t.Failed() {
		return
	}
	for i := 1; i <= len(p.lab.Hosts); i++ {
		b, _ := os.ReadFile(p.logFile(i))
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		p.t.Logf("last lines of web/%d's log:\n%s", i, strings.Join(lines, "\n"))
	}
}
