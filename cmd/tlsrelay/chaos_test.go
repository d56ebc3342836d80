package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/internal/app/etcdaccess"
	"github.com/tlsrelay/tlsrelay/internal/testkit/netlab"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

var (
	chaosFor  = flag.Duration("chaos", 90*time.Second, "how long TestChaos injects faults (a soak: -chaos 10m)")
	chaosSeed = flag.Uint64("chaos.seed", 0, "TestChaos's random seed (0: from the clock; the test logs it)")
)

// TestChaos runs a group under random faults for -chaos and checks the group's
// invariants all along and at the end: five agents on a 3-member etcd cluster over TLS
// with RBAC (each unit its own etcd user), short-lived certificates, and faults one
// after another: agents (the leader among them) killed with -9 and restarted or stopped
// with SIGSTOP, etcd members killed or stopped, quorum lost and back, a member cut from
// its peers but not from its clients (a new unit joins meanwhile and must be signed by
// the two that remain), a unit's output disk full for a while, a rogue member writing garbage and an oversize value into its
// bag with its own credentials, a CA rotation started in the middle, and a unit that
// leaves for good.
func TestChaos(t *testing.T) {
	t.Parallel()
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos seed %d (-chaos.seed %d repeats this run's choices)", seed, seed)
	c := newChaos(t, rand.New(rand.NewPCG(seed, 1)))
	units := []string{"web/0", "web/1", "web/2", "web/3", "web/4"}
	c.mountSmallDisk("web/4")
	for _, u := range units {
		c.start(u)
	}
	c.awaitAvailable(units, 2*time.Minute)
	c.joinRogue()

	deadline := time.Now().Add(*chaosFor)
	rotateAt, retireAt := time.Now().Add(*chaosFor/3), time.Now().Add(*chaosFor*2/5)
	for time.Now().Before(deadline) {
		switch {
		case !c.rotated && time.Now().After(rotateAt):
			c.rotate()
		case c.retired == "" && time.Now().After(retireAt):
			c.retire("web/3")
		case c.retired != "" && !c.revokedSeen && time.Now().After(c.retiredAt.Add(chaosDelay+2*chaosTTL+10*time.Second)):
			c.checkRevoked()
		default:
			c.fault()
		}
		c.check()
	}

	c.heal()
	c.awaitAvailable(c.live(), 2*time.Minute)
	c.check()
	c.start("web/5") // an honest new unit, once the faults have healed
	c.awaitAvailable([]string{"web/5"}, 30*time.Second)
	c.final()
}

// chaos is the group under test and what the faults have done to it.
type chaos struct {
	t           *testing.T
	rng         *rand.Rand
	lab         *netlab.Lab
	cluster     *netlab.Etcd
	ag          *agents
	obs         relation.Observer
	tls         *tls.Config
	creds       string                       // the units' etcd password files
	root        string                       // a config with etcd's root credentials, for the CLI
	small       string                       // the output directory on a small tmpfs
	cas         map[string]*x509.Certificate // every CA the group published, by fingerprint
	held        map[string]bool              // units that held a valid pair
	counts      map[string]int               // faults injected, by kind
	rotated     bool
	retired     string          // the unit that left for good
	retiredAt   time.Time       // when
	gone        string          // its serial
	revokedSeen bool            // in the CRL, checked once it was due
	late        []string        // units started while a member was isolated
	firstSigned []time.Duration // from each isolation to the certificate of the unit that joined then
}

const chaosTTL, chaosDelay = 6 * time.Second, 20 * time.Second

// chaosLate is how many units may join while a member is isolated, each with its own
// etcd user made at the start.
const chaosLate = 16

func newChaos(t *testing.T, rng *rand.Rand) *chaos {
	// The members on hosts of a lab, so that one can be cut from its peers, and on
	// loopback forwards for the agents, the CLI and the test.
	lab := netlab.New(t, 3)
	cluster := lab.StartEtcdOnLoopback(t.TempDir(), 1, 2, 3)
	ag := newAgentsWith(t, fmt.Sprintf(`relation:
  name: chaos
  store: etcd
  etcd:
    endpoints: [%s]
    tls: {ca_file: %q, cert_file: %q, key_file: %q}
    lease_ttl: %s
certificate: {validity: 3m, renew_at: 0.5}
ca: {revoke_departed_after: %s}
`, strings.Join(cluster.Endpoints, ", "), cluster.CAFile, cluster.CertFile, cluster.KeyFile, chaosTTL, chaosDelay), true)
	ag.appendLogs = true
	// RBAC: each unit its own etcd user, as `etcd bootstrap` makes them; root for the CLI.
	creds, rootPassword := filepath.Join(ag.dir, "credentials"), filepath.Join(ag.dir, "root.password")
	if err := os.WriteFile(rootPassword, []byte("root-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := rootConfig(t, ag, rootPassword)
	if r := runBinary(t, ag.bin, "etcd", "bootstrap", "--config", ag.config, "--leader-eligible", "web/0,web/1,web/2,web/3,web/4,web/5",
		"--members", "rogue/0,"+strings.Join(lateUnits(), ","), "--credentials-dir", creds, "--root-password-file", rootPassword, "--enable-auth"); r.code != 0 {
		t.Fatalf("etcd bootstrap: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	tlsConfig, err := etcd.TLSConfig(cluster.CAFile, cluster.CertFile, cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	obs := observe(t, etcd.Options{Schema: protocol.Schema(), Endpoints: cluster.Endpoints, Relation: "chaos", TLS: tlsConfig,
		Username: "root", Password: "root-secret"})
	return &chaos{t: t, rng: rng, lab: lab, cluster: cluster, ag: ag, obs: obs, tls: tlsConfig, creds: creds, root: root,
		cas: map[string]*x509.Certificate{}, held: map[string]bool{}, counts: map[string]int{}}
}

// start starts unit's agent with its own etcd credentials.
func (c *chaos) start(unit string) {
	c.ag.startAs("chaos", c.creds, unit, true)
}

// mountSmallDisk puts unit's output directory on a 512 KiB tmpfs, which the disk fault
// fills.
func (c *chaos) mountSmallDisk(unit string) {
	if os.Geteuid() != 0 {
		c.t.Fatal("mounting a small tmpfs as a unit's output directory needs root (CAP_SYS_ADMIN)")
	}
	c.small = c.ag.unitDir(unit)
	if err := os.MkdirAll(c.small, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", c.small).CombinedOutput(); err != nil {
		c.t.Fatalf("mount a tmpfs: %v\n%s", err, b)
	}
	c.t.Cleanup(func() { exec.Command("umount", "-l", c.small).Run() })
}

// fault injects one fault, lets it last a while, and heals it.
func (c *chaos) fault() {
	t := c.t
	pause := func(lo, hi time.Duration) { time.Sleep(lo + time.Duration(c.rng.Int64N(int64(hi-lo)))) }
	live := c.live()
	unit := live[c.rng.IntN(len(live))]
	member := 1 + c.rng.IntN(3)
	switch kind := c.rng.IntN(12); {
	case kind == 11:
		c.counts["etcd member isolated from its peers"]++
		c.lab.IsolateMember(member)
		c.joinLate(member)
		pause(time.Second, 8*time.Second)
		c.lab.Rejoin(member)
	case kind == 10:
		c.counts["output disk full"]++
		filler := filepath.Join(c.small, "filler")
		fill(t, filler)
		pause(2*time.Second, 10*time.Second)
		os.Remove(filler)
	case kind < 3:
		c.counts["agent killed (-9)"]++
		c.ag.signal(unit, syscall.SIGKILL)
		pause(500*time.Millisecond, 8*time.Second)
		c.start(unit)
	case kind < 5:
		c.counts["agent stopped (SIGSTOP)"]++
		c.ag.signal(unit, syscall.SIGSTOP)
		pause(500*time.Millisecond, 10*time.Second)
		c.ag.signal(unit, syscall.SIGCONT)
	case kind < 7:
		c.counts["etcd member killed (-9)"]++
		c.cluster.Kill(member)
		pause(time.Second, 8*time.Second)
		c.cluster.Start(member)
	case kind < 9:
		c.counts["etcd member stopped (SIGSTOP)"]++
		c.cluster.Signal(member, syscall.SIGSTOP)
		pause(time.Second, 8*time.Second)
		c.cluster.Signal(member, syscall.SIGCONT)
	default:
		c.counts["etcd quorum lost"]++
		other := 1 + member%3
		c.cluster.Kill(member)
		c.cluster.Kill(other)
		pause(2*time.Second, 8*time.Second)
		c.cluster.Start(member)
		c.cluster.Start(other)
	}
	pause(500*time.Millisecond, 3*time.Second)
}

// joinLate starts a unit that has never been in the group while member is cut from its
// peers, and records how long it waits for a certificate: the two members left are a
// majority, and the isolated one, which answers at once that it has no leader, must not
// stall them. It then leaves without a word (kill -9), to be revoked after the delay.
func (c *chaos) joinLate(member int) {
	if len(c.late) == chaosLate {
		return
	}
	unit := lateUnits()[len(c.late)]
	c.late = append(c.late, unit)
	asked := time.Now()
	c.ag.startAs("chaos", c.creds, unit, false)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if s, err := c.snapshot(); err == nil && available(s, unit) {
			break
		}
		if time.Now().After(deadline) {
			c.ag.signalAgent(unit, syscall.SIGQUIT) // its goroutines, in its log, say where it waits
			time.Sleep(time.Second)
			c.t.Fatalf("%s, joining while etcd member %d is isolated, has no certificate after 30 s; its log:\n%s", unit, member, c.ag.logOf(unit))
		}
	}
	c.firstSigned = append(c.firstSigned, time.Since(asked).Round(100*time.Millisecond))
	c.ag.signal(unit, syscall.SIGKILL)
	log := c.ag.logOf(unit)
	c.t.Logf("%s joined with etcd member %d isolated: started %s, certificate in the relation %s; by its log, CSR at %s, installed at %s",
		unit, member, asked.Format("15:04:05.0"), c.firstSigned[len(c.firstSigned)-1], textLogged(log, "created CSR"), textLogged(log, "installed certificate"))
}

// textLogged is the time of the first line of an agent's text log that contains text, as
// the log gives it.
func textLogged(log, text string) string {
	for _, line := range strings.Split(log, "\n") {
		if at, _, ok := strings.Cut(line, " "); ok && strings.Contains(line, text) {
			return at
		}
	}
	return "(not logged)"
}

// lateUnits names the units joinLate may start.
func lateUnits() []string {
	units := make([]string, chaosLate)
	for i := range units {
		units[i] = fmt.Sprintf("late/%d", i)
	}
	return units
}

// joinRogue joins a member that writes garbage into its own bag with its own etcd
// credentials: a CSR over its field's cap, a serial the group never issued, no trusted
// CA, a state and an error that would forge rows and move a terminal's cursor.
func (c *chaos) joinRogue() {
	tlsConfig, err := etcd.TLSConfig(c.cluster.CAFile, c.cluster.CertFile, c.cluster.KeyFile)
	if err != nil {
		c.t.Fatal(err)
	}
	password, err := os.ReadFile(etcdaccess.PasswordFile(c.creds, "rogue/0"))
	if err != nil {
		c.t.Fatal(err)
	}
	store, err := etcd.Open(etcd.Options{Schema: protocol.Schema(), Endpoints: c.cluster.Endpoints, Relation: "chaos", TLS: tlsConfig, LeaseTTL: chaosTTL,
		Username: etcd.UserName("chaos", "rogue/0"), Password: strings.TrimSpace(string(password))})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { store.Close() })
	rogue, err := store.Join(context.Background(), "rogue/0", relation.JoinOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	oversize := "\x00garbage\xff" + strings.Repeat("g", protocol.Schema().BagFields[protocol.KeyCSR])
	if err := rogue.SetUnitData(context.Background(), map[string]string{protocol.KeyCSR: oversize, protocol.KeyProfile: "peer",
		protocol.KeySerial: "deadbeef", protocol.KeyTrusts: "", protocol.KeyState: "\x1b]0;owned\x07",
		protocol.KeyError: "x\nweb/9  available  01\x1b[2K\r"}); err != nil {
		c.t.Fatal(err)
	}
	c.counts["rogue member"]++
}

func (c *chaos) rotate() {
	c.rotated = true
	if r := runBinary(c.t, c.ag.bin, "ca", "rotate", "--config", c.root, "--wait=false", "--timeout", "30s"); r.code != 0 {
		c.t.Fatalf("ca rotate: exit %d\n%s", r.code, r.stderr)
	}
	c.counts["CA rotation"]++
}

// retire stops unit's agent for good (kill -9: it says nothing), remembering the serial
// on its disk, which must reach the CRL once it has been gone for the delay.
func (c *chaos) retire(unit string) {
	c.retired, c.retiredAt, c.gone = unit, time.Now(), mustReadCert(c.t, filepath.Join(c.ag.unitDir(unit), "tls.crt")).SerialNumber.Text(16)
	c.ag.signal(unit, syscall.SIGKILL)
	c.counts["unit gone for good"]++
}

// heal ends every fault still in force: every member runs and goes on, every agent but
// the retired one runs.
func (c *chaos) heal() {
	for i := 1; i <= 3; i++ {
		if !c.cluster.Running(i) {
			c.cluster.Start(i)
		}
		c.cluster.Signal(i, syscall.SIGCONT)
	}
	for _, u := range c.live() {
		if !slices.Contains(c.ag.running(), u) {
			c.start(u)
		}
		c.ag.signal(u, syscall.SIGCONT)
	}
}

// live lists the units started and not retired, in order.
func (c *chaos) live() []string {
	var units []string
	for _, u := range []string{"web/0", "web/1", "web/2", "web/3", "web/4", "web/5"} {
		if u != c.retired && (c.held[u] || slices.Contains(c.ag.running(), u)) {
			units = append(units, u)
		}
	}
	return units
}

func (c *chaos) awaitAvailable(units []string, within time.Duration) {
	c.t.Helper()
	awaitObs(c.t, c.obs, fmt.Sprintf("%v with certificates", units), within, func(s relation.Snapshot) bool {
		for _, u := range units {
			if !available(s, u) {
				return false
			}
		}
		return true
	})
	for _, u := range units {
		c.held[u] = true
	}
}

// check reads the CAs the group publishes, then every unit's files: each unit that held a
// valid pair still holds one, from a CA the group published, naming that unit alone.
func (c *chaos) check() {
	c.t.Helper()
	if s, err := c.snapshot(); err == nil {
		c.learnCAs(s)
	}
	now := time.Now()
	for unit := range c.held {
		if unit == c.retired {
			continue
		}
		var cert *x509.Certificate
		var err error
		for try := 0; try < 5; try++ { // an install replaces two files: a reader may land between
			if cert, err = c.pairOf(unit, now); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			c.t.Fatalf("%s held a valid pair and no longer does: %v", unit, err)
		}
		if cert.Subject.CommonName != protocol.UnitDNSName(unit) || !slices.Equal(cert.DNSNames, []string{protocol.UnitDNSName(unit)}) {
			c.t.Fatalf("%s holds a certificate for %q %v", unit, cert.Subject.CommonName, cert.DNSNames)
		}
		if !c.fromGroupCA(cert) {
			c.t.Fatalf("%s holds a certificate from %q, a CA the group never published", unit, cert.Issuer)
		}
	}
}

// pairOf reads unit's certificate and key: both parse, belong together, and the
// certificate is valid at now.
func (c *chaos) pairOf(unit string, now time.Time) (*x509.Certificate, error) {
	dir := c.ag.unitDir(unit)
	certPEM, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, err
	}
	certs, err := certutil.ParseCertificates(certPEM)
	if err != nil {
		return nil, err
	}
	pub, err := certutil.PublicKeyOfPrivatePEM(keyPEM)
	if err != nil {
		return nil, err
	}
	if !certutil.SamePublicKey(certs[0].PublicKey, pub) {
		return nil, fmt.Errorf("tls.key is not tls.crt's key")
	}
	if now.Before(certs[0].NotBefore) || now.After(certs[0].NotAfter) {
		return nil, fmt.Errorf("tls.crt is valid from %s to %s, not at %s", certs[0].NotBefore, certs[0].NotAfter, now)
	}
	return certs[0], nil
}

func (c *chaos) fromGroupCA(cert *x509.Certificate) bool {
	for _, ca := range c.cas {
		if cert.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

func (c *chaos) learnCAs(s relation.Snapshot) {
	if certs, err := certutil.ParseCertificates([]byte(s.LeaderData[protocol.KeyCA])); err == nil {
		for _, ca := range certs {
			c.cas[caseal.Fingerprint(ca.Raw)] = ca
		}
	}
}

func (c *chaos) snapshot() (relation.Snapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.obs.Snapshot(ctx)
}

// checkRevoked: the unit gone for good, away past the delay, has the serial on its disk
// in the CRL in leader data and in every unit's ca.crl, while that certificate is valid
// (an expired one leaves the CRL).
func (c *chaos) checkRevoked() {
	t := c.t
	c.revokedSeen = true
	awaitObs(t, c.obs, "the retired unit's serial in the CRL", time.Minute, func(s relation.Snapshot) bool {
		return slices.Contains(crlSerials(t, s), c.gone)
	})
	for _, u := range c.live() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			crl, err := os.ReadFile(filepath.Join(c.ag.unitDir(u), "ca.crl"))
			if err == nil && slices.Contains(pemCRLSerials(t, string(crl)), c.gone) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's ca.crl lacks the serial %s of %s, gone for good", u, c.gone, c.retired)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.counts["revocation checked"]++
}

// final checks what only the whole run shows, then stops everything and checks that
// nothing is left running.
func (c *chaos) final() {
	t := c.t
	// The rotation begun in the middle has ended: every unit holds a certificate of the
	// new CA, and the old one has left the bundle.
	awaitObs(t, c.obs, "the CA rotation to end", 2*time.Minute, func(s relation.Snapshot) bool {
		return s.LeaderData[protocol.KeyCARotation] == "" && s.LeaderData[protocol.KeyCARequest] != ""
	})
	if !c.revokedSeen {
		c.checkRevoked()
	}
	s := awaitObs(t, c.obs, "the group settled", time.Minute, func(s relation.Snapshot) bool { return s.Leader != "" })
	if !strings.Contains(s.Oversized["rogue/0"], "csr:") || s.LeaderData[protocol.RejectionKey("rogue/0")] != "" {
		t.Errorf("the rogue's oversize CSR: oversized %q, rejection %q; want it named and never read", s.Oversized["rogue/0"], s.LeaderData[protocol.RejectionKey("rogue/0")])
	}
	os.Remove(filepath.Join(c.small, "filler"))

	// Certificates signed stay within those installed plus one per agent killed (a
	// renewal in flight) and the unit gone for good.
	signed, installed := 0, 0
	for _, u := range append(append(c.live(), c.retired), c.late...) {
		log := c.ag.logOf(u)
		signed += strings.Count(log, "signed CSR:")
		installed += strings.Count(log, "installed certificate:")
	}
	kills := c.counts["agent killed (-9)"] + 1
	t.Logf("faults: %v; certificates signed %d, installed %d; a unit joining while a member was isolated signed after %v",
		c.counts, signed, installed, c.firstSigned)
	if signed > installed+kills {
		t.Errorf("%d certificates signed, %d installed: more than one per agent killed (%d) went unused", signed, installed, kills)
	}

	// No private key in etcd: not a unit's key, not a pending one. (A client of its own:
	// one made before the faults may hold an auth token a restarted member forgot.)
	client, err := clientv3.New(clientv3.Config{Endpoints: c.cluster.Endpoints, TLS: c.tls, DialTimeout: 5 * time.Second,
		Username: "root", Password: "root-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var everything strings.Builder
	for _, kv := range resp.Kvs {
		everything.Write(kv.Key)
		everything.Write(kv.Value)
	}
	for _, u := range append(append(c.live(), c.retired), c.late...) {
		for _, name := range []string{"tls.key", "pending.key"} {
			b, err := os.ReadFile(filepath.Join(c.ag.unitDir(u), name))
			if err != nil {
				continue
			}
			block, _ := pem.Decode(b)
			if block == nil {
				t.Fatalf("%s's %s is not PEM", u, name)
			}
			if body := base64.StdEncoding.EncodeToString(block.Bytes)[:48]; strings.Contains(everything.String(), body) || strings.Contains(everything.String(), string(block.Bytes)) {
				t.Errorf("%s's %s is in etcd", u, name)
			}
		}
	}

	// Nothing left running once the agents and etcd are stopped.
	c.ag.killAll()
	for i := 1; i <= 3; i++ {
		c.cluster.Kill(i)
	}
	for _, dir := range []string{c.ag.dir, c.ag.tmp} {
		if left := processesOf(dir); len(left) > 0 {
			t.Errorf("processes left running: %v", left)
		}
	}
	t.Logf("units checked: %s; CAs the group published: %d", strconv.Itoa(len(c.held)), len(c.cas))
}
