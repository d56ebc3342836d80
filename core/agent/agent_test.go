package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/relationtest"
	"github.com/tlsrelay/tlsrelay/core/secrets"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/plugins/cfssl"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// inProcess serves every role from one backend in this process. The real cfssl backend,
// not a fake: only the process boundary is skipped (core/backend tests cross it).
type inProcess struct{ b sdk.Backend }

func (p inProcess) For(context.Context, config.Role) (sdk.Backend, error) { return p.b, nil }

func newCfssl(t *testing.T, stateDir string) sdk.Backend {
	t.Helper()
	b := cfssl.New(nil)
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{StateDir: stateDir}); err != nil {
		t.Fatal(err)
	}
	return b
}

var testCert = config.Certificate{
	CommonName: "{{.Unit}}", SANs: []string{"localhost"},
	Key: config.Key{Algorithm: "ecdsa", Size: 256}, Profile: "peer",
	Validity: time.Hour, RenewAt: 0.66, Output: config.Output{Mode: "0644"},
}

// testPolicy lets every unit have localhost, as testCert asks.
var testPolicy = func() *policy.Policy {
	r := policy.Defaults()
	r.SharedSANs = []string{"localhost"}
	return policy.MustNew(r)
}()

// cluster runs units as agents on one memory relation until the test ends.
type cluster struct {
	t       *testing.T
	store   *relation.Memory
	root    string
	backend sdk.Backend
	mu      sync.Mutex
	members map[string]relation.Member
	cancel  map[string]context.CancelFunc
	done    map[string]chan struct{} // closed when the unit's agent has returned
	wg      sync.WaitGroup
	policy  *policy.Policy
	cert    config.Certificate
	// opts, if set, changes each agent's options before it starts.
	opts func(*Options)
}

func newCluster(t *testing.T) *cluster {
	root := t.TempDir()
	c := &cluster{t: t, store: relation.NewMemory(protocol.Schema()), root: root, backend: newCfssl(t, filepath.Join(root, "ca")),
		members: map[string]relation.Member{}, cancel: map[string]context.CancelFunc{}, done: map[string]chan struct{}{}, policy: testPolicy, cert: testCert}
	t.Cleanup(func() {
		for _, cancel := range c.cancel {
			cancel()
		}
		c.wg.Wait()
	})
	return c
}

func (c *cluster) dir(unit string) string {
	return filepath.Join(c.root, protocol.UnitDNSName(unit))
}

func (c *cluster) start(unit string) {
	c.t.Helper()
	c.startWith(unit, true)
}

// startWith starts unit, campaigning to lead if eligible.
func (c *cluster) startWith(unit string, eligible bool) {
	c.t.Helper()
	m, err := c.store.Join(context.Background(), unit, relation.JoinOptions{LeaderEligible: eligible})
	if err != nil {
		c.t.Fatal(err)
	}
	o := Options{Member: m, Backends: inProcess{c.backend}, Certificate: c.cert, Policy: c.policy, Dir: c.dir(unit)}
	if c.opts != nil {
		c.opts(&o)
	}
	a, err := New(o)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.mu.Lock()
	c.members[unit], c.cancel[unit], c.done[unit] = m, cancel, done
	c.mu.Unlock()
	c.wg.Add(1)
	go func() { defer c.wg.Done(); defer close(done); a.Run(ctx) }()
}

// halt stops unit's agent and waits until it has returned; its membership stays, as a
// process that stopped answering leaves its lease to expire.
func (c *cluster) halt(unit string) {
	c.mu.Lock()
	cancel, done := c.cancel[unit], c.done[unit]
	c.mu.Unlock()
	cancel()
	<-done
}

// stop stops unit's agent, waits until it has returned (a unit started again on its
// directory would otherwise find the directory still locked), and leaves the relation.
func (c *cluster) stop(unit string) {
	c.halt(unit)
	if err := c.members[unit].Leave(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// waitCerts waits until every unit has a certificate for its current key that chains
// to the CA in its ca.crt, and returns the certificates.
func (c *cluster) waitCerts(units ...string) map[string]*x509.Certificate {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		certs, err := c.certs(units)
		if err == nil {
			return certs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("units did not converge: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *cluster) certs(units []string) (map[string]*x509.Certificate, error) {
	out := map[string]*x509.Certificate{}
	for _, unit := range units {
		f := files{dir: c.dir(unit)}
		local, _, err := f.loadLocal()
		if err != nil {
			return nil, err
		}
		if local.Installed == nil || local.Pending != nil {
			return nil, fmt.Errorf("%s has no settled certificate", unit)
		}
		roots, err := certutil.ParseCertificates([]byte(local.Installed.CAPEM))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", unit, err)
		}
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		if _, err := local.Installed.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: protocol.UnitDNSName(unit)}); err != nil {
			return nil, fmt.Errorf("%s: %w", unit, err)
		}
		out[unit] = local.Installed.Cert
	}
	return out, nil
}

func TestGroupConverges(t *testing.T) {
	c := newCluster(t)
	units := []string{"db/0", "db/1", "db/2"}
	for _, u := range units {
		c.start(u)
	}
	certs := c.waitCerts(units...)
	for _, u := range units {
		if certs[u].Subject.CommonName != u {
			t.Errorf("%s: CN = %q", u, certs[u].Subject.CommonName)
		}
		info, err := os.Stat(filepath.Join(c.dir(u), KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s: %s has mode %o, want %o", u, KeyFile, mode, 0o600)
		}
	}
	assertNoKeyMaterial(t, c.members["db/0"])
}

// assertNoKeyMaterial fails if any private key reached the relation.
func assertNoKeyMaterial(t *testing.T, m relation.Member) {
	t.Helper()
	snap, err := m.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	values := []string{}
	for _, bag := range snap.Units {
		for _, v := range bag {
			values = append(values, v)
		}
	}
	for _, v := range snap.LeaderData {
		values = append(values, v)
	}
	if len(values) == 0 {
		t.Fatal("relation is empty: nothing to check")
	}
	for _, v := range values {
		if strings.Contains(v, "PRIVATE KEY") {
			t.Fatalf("private key material in the relation: %.60q", v)
		}
	}
}

func TestLostCertificateIsReissued(t *testing.T) {
	c := newCluster(t)
	c.start("db/0")
	c.start("db/1")
	before := c.waitCerts("db/0", "db/1")["db/1"]
	for _, name := range []string{KeyFile, CertFile} {
		if err := os.Remove(filepath.Join(c.dir("db/1"), name)); err != nil {
			t.Fatal(err)
		}
	}
	// The agent notices on its next wake-up; any relation change wakes it.
	if err := c.members["db/0"].SetUnitData(context.Background(), map[string]string{"poke": "1"}); err != nil {
		t.Fatal(err)
	}
	after := c.waitCerts("db/1")["db/1"]
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("the lost certificate came back instead of a new one")
	}
	if certutil.SamePublicKey(after.PublicKey, before.PublicKey) {
		t.Fatal("the new certificate is for the lost key")
	}
}

func TestLeaderDepartureKeepsTheCA(t *testing.T) {
	c := newCluster(t)
	c.start("db/0")
	c.start("db/1")
	first := c.waitCerts("db/0", "db/1")
	c.stop("db/0") // the leader leaves; db/1 leads and must sign with the same CA
	c.start("db/2")
	certs := c.waitCerts("db/1", "db/2")
	if certs["db/2"].Issuer.String() != first["db/1"].Issuer.String() ||
		string(certs["db/2"].AuthorityKeyId) != string(first["db/1"].AuthorityKeyId) {
		t.Fatalf("new leader signed with another CA: %s vs %s", certs["db/2"].Issuer, first["db/1"].Issuer)
	}
	if certs["db/1"].SerialNumber.Cmp(first["db/1"].SerialNumber) != 0 {
		t.Fatal("leader change re-issued a valid certificate")
	}
	snap, err := c.members["db/1"].Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.LeaderData[protocol.SignedCertificateKey("db/0")]; ok {
		t.Fatal("the departed unit's certificate was not forgotten")
	}
}

// byRole serves each role from its own in-process backend.
type byRole map[config.Role]sdk.Backend

func (b byRole) For(_ context.Context, role config.Role) (sdk.Backend, error) { return b[role], nil }

// listener is an in-memory secrets backend: the agent's wiring is under test here; the
// fetch itself is tested against a real Barbican in core/secrets and plugins/barbican.
type listener struct {
	sdk.Unimplemented
	s sdk.Secret
}

func (listener) Info(context.Context) (sdk.Info, error)                { return sdk.Info{Name: "listener"}, nil }
func (listener) Configure(context.Context, sdk.ConfigureRequest) error { return nil }
func (l listener) FetchSecret(_ context.Context, ref string) (sdk.Secret, error) {
	if ref == "missing" {
		return sdk.Secret{}, sdk.Errorf(sdk.CodeNotFound, ref, "no such secret")
	}
	return l.s, nil
}

func TestAgentFetchesConfiguredSecrets(t *testing.T) {
	root := t.TempDir()
	signer := newCfssl(t, filepath.Join(root, "ca"))
	csr, _ := signer.CreateCSR(context.Background(), sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: "listener-1"})
	chain, _ := signer.SignCSR(context.Background(), sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: sdk.ProfileServer})
	store := relation.NewMemory(protocol.Schema())
	m, _ := store.Join(context.Background(), "lb/0", relation.JoinOptions{LeaderEligible: true})
	out := filepath.Join(root, "l1")
	fetched := make(chan error, 100)
	reg := metrics.New()
	a, err := New(Options{Member: m, Certificate: testCert, Policy: testPolicy, Dir: filepath.Join(root, "lb-0"),
		Backends: byRole{config.RoleCSR: signer, config.RoleSigner: signer,
			config.RoleSecrets: listener{s: sdk.Secret{CertificatePEM: chain.ChainPEM, Key: csr.Key}}},
		Secrets: []config.Secret{{Name: "l1", Ref: "ref-1", Output: config.SecretOutput{Dir: out}},
			{Name: "l2", Ref: "missing", Output: config.SecretOutput{Dir: filepath.Join(root, "l2")}}},
		SecretsRefresh: 50 * time.Millisecond,
		Metrics:        reg,
		OnSecret: func(r secrets.Result, err error) {
			if r.Name == "l1" || err == nil {
				fetched <- err
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	for i := range 2 {
		select {
		case err := <-fetched:
			if err != nil {
				t.Fatalf("fetch %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("fetch %d did not happen", i)
		}
	}
	if info, err := os.Stat(filepath.Join(out, secrets.KeyFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("secret key file: %v", err)
	}
	cancel()
	// Fetches are counted by secret and class of result.
	counts := map[string]float64{}
	families, _ := reg.Registry().Gather()
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			if f.GetName() == "tlsrelay_secret_fetches_total" {
				// Labels come sorted by name: result, then secret.
				counts[metric.GetLabel()[0].GetValue()+"/"+metric.GetLabel()[1].GetValue()] = metric.GetCounter().GetValue()
			}
		}
	}
	if counts["ok/l1"] < 2 || counts["not found/l2"] < 1 || len(counts) != 2 {
		t.Errorf("secret fetches by result/secret = %v, want ok/l1 >= 2, not found/l2 >= 1, nothing else", counts)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRenewalDueGivesANewKeyAndCertificate(t *testing.T) {
	root := t.TempDir()
	backend := inProcess{newCfssl(t, filepath.Join(root, "ca"))}
	store := relation.NewMemory(protocol.Schema())
	m, _ := store.Join(context.Background(), "db/0", relation.JoinOptions{LeaderEligible: true})
	var skew atomic.Int64 // how far the agent's clock runs ahead
	var sawRenewalDue atomic.Bool
	dir := filepath.Join(root, "db-0")
	a, err := New(Options{Member: m, Backends: backend, Certificate: testCert, Policy: testPolicy, Dir: dir,
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
		OnStatus: func(s Status) {
			if s.State == protocol.StateRenewalDue {
				// Due once: the true clock from here on, or every certificate signed would
				// be due at once on a clock 50 minutes ahead, and the unit would renew until
				// policy.max_certificates stops it (as it stops a unit whose clock runs ahead).
				sawRenewalDue.Store(true)
				skew.Store(0)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { a.Run(ctx); close(stopped) }()
	// The agent must be gone before TempDir's cleanup removes its files.
	defer func() { cancel(); <-stopped }()
	waitLeaf := func(not *x509.Certificate) *x509.Certificate {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			local, _, _ := files{dir: dir}.loadLocal()
			if local.Installed != nil && local.Pending == nil && (not == nil || !local.Installed.Cert.Equal(not)) {
				return local.Installed.Cert
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no (new) certificate installed")
		return nil
	}
	first := waitLeaf(nil)
	// testCert lasts an hour and renews at 0.66 of it: 50 minutes on is past due.
	skew.Store(int64(50 * time.Minute))
	m.SetUnitData(context.Background(), map[string]string{"poke": "1"}) // wake the agent now
	second := waitLeaf(first)                                           // not due on the true clock: renewal stops
	if certutil.SamePublicKey(first.PublicKey, second.PublicKey) {
		t.Fatal("renewal kept the old key")
	}
	if !sawRenewalDue.Load() {
		t.Fatal("the agent never reported renewal due")
	}
}

// A unit that turned hostile publishes each CSR of the hostile table in its bag; the
// leader (a real agent, real cfssl) answers every one with a rejection naming the reason
// and signs none, and the honest units keep their certificates.
func TestLeaderRefusesHostileCSRs(t *testing.T) {
	c := newCluster(t)
	c.policy = policy.MustNew(policy.Defaults()) // localhost not opted in
	c.cert.SANs = nil
	c.start("node/1") // node/1 joins first: it leads
	c.waitCerts("node/1")
	attacker, err := c.store.Join(context.Background(), "node/0", relation.JoinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Leave(context.Background())
	for _, h := range pkitest.HostileCSRs(t) {
		t.Run(h.Name, func(t *testing.T) {
			if err := attacker.SetUnitData(context.Background(), map[string]string{protocol.KeyCSR: h.CSRPEM, protocol.KeyProfile: "peer"}); err != nil {
				t.Fatal(err)
			}
			snap := relationtest.Await(t, attacker, "the leader's answer", func(s relation.Snapshot) bool {
				r, ok := protocol.DecodeRejection(s.LeaderData[protocol.RejectionKey("node/0")])
				return ok && r.CSRDigest == protocol.Digest(h.CSRPEM)
			})
			r, _ := protocol.DecodeRejection(snap.LeaderData[protocol.RejectionKey("node/0")])
			if !strings.Contains(r.Reason, h.Reason) {
				t.Errorf("rejection %q, want one containing %q", r.Reason, h.Reason)
			}
			if chain := snap.LeaderData[protocol.SignedCertificateKey("node/0")]; chain != "" {
				t.Errorf("the leader signed a certificate for the hostile unit:\n%s", chain)
			}
		})
	}
	c.waitCerts("node/1")
}

// failingSigner signs nothing: every SignCSR fails with Internal, as a backend that
// chokes on one CSR does.
type failingSigner struct {
	sdk.Backend
	calls atomic.Int32
}

func (f *failingSigner) SignCSR(context.Context, sdk.SignRequest) (sdk.Certificate, error) {
	f.calls.Add(1)
	return sdk.Certificate{}, sdk.Errorf(sdk.CodeInternal, "csr", "the signer choked")
}

// A CSR the signer fails on with Internal is tried signAttempts times, then rejected
// with the signer's reason: never retried for ever with the unit left in the dark.
func TestRepeatedInternalErrorBecomesARejection(t *testing.T) {
	c := newCluster(t)
	signer := &failingSigner{Backend: c.backend}
	c.backend = signer
	c.start("db/0")
	m := c.members["db/0"]
	snap := relationtest.Await(t, m, "a rejection of db/0's CSR", func(s relation.Snapshot) bool {
		return s.LeaderData[protocol.RejectionKey("db/0")] != ""
	})
	r, _ := protocol.DecodeRejection(snap.LeaderData[protocol.RejectionKey("db/0")])
	if !strings.Contains(r.Reason, "the signer choked") {
		t.Errorf("rejection %q does not give the signer's reason", r.Reason)
	}
	if n := signer.calls.Load(); n != protocol.SignAttempts {
		t.Errorf("SignCSR called %d times, want %d", n, protocol.SignAttempts)
	}
}

// A leaf never outlives its CA: with 3 hours left on the CA, a unit asking for 30 days
// gets a certificate that ends with the CA.
func TestValidityIsCappedByTheCA(t *testing.T) {
	c := newCluster(t)
	ca := pkitest.NewCA(t, "short-lived CA", time.Now().Add(-365*24*time.Hour+3*time.Hour))
	if err := c.backend.ImportCA(context.Background(), sdk.CAKeyPair{CertPEM: []byte(ca.PEM), Key: pkitest.KeyPEM(t, ca.Key)}); err != nil {
		t.Fatal(err)
	}
	c.cert.Validity = 720 * time.Hour
	c.start("db/0")
	leaf := c.waitCerts("db/0")["db/0"]
	if leaf.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("leaf ends %s, after its CA %s", leaf.NotAfter, ca.Cert.NotAfter)
	}
	if time.Until(leaf.NotAfter) < 2*time.Hour {
		t.Fatalf("leaf ends %s: capped too far", leaf.NotAfter)
	}
}

// on_change runs after the unit's files change, with the unit and directory in its
// environment; a failing or hanging command is reported in the unit's status (and
// stopped at its timeout) while the certificate stays installed. output.mode sets the
// mode of tls.crt and ca.crt; the key stays 0600; output.owner and .group own them all.
func TestOnChangeAndOutputModeAndOwner(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 { // as root (CI), prove the files are given away, not merely kept
		uid, gid = 65534, 65534
	}
	for _, tt := range []struct {
		name, command, wantErr string
	}{
		{"a command that succeeds", `echo "$TLSRELAY_UNIT $TLSRELAY_OUTPUT_DIR" >> "$MARK"`, ""},
		{"a command that fails", `echo "reload refused" >&2; exit 3`, "reload refused"},
		{"a command that hangs", `sleep 30`, "did not finish within 1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "ran")
			t.Setenv("MARK", mark)
			c := newCluster(t)
			c.cert.OnChange, c.cert.OnChangeTimeout = tt.command, time.Second
			c.cert.Output.Mode = "0640"
			c.cert.Output.Owner, c.cert.Output.Group = strconv.Itoa(uid), strconv.Itoa(gid)
			c.start("db/0")
			c.waitCerts("db/0")
			for _, f := range []struct {
				name string
				mode os.FileMode
			}{{CertFile, 0o640}, {CAFile, 0o640}, {KeyFile, 0o600}} {
				info, err := os.Stat(filepath.Join(c.dir("db/0"), f.name))
				if err != nil || info.Mode().Perm() != f.mode {
					t.Fatalf("%s: %v, mode %v; want %04o", f.name, err, info.Mode().Perm(), f.mode)
				}
				if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
					t.Errorf("%s: owned by %d:%d, want %d:%d", f.name, st.Uid, st.Gid, uid, gid)
				}
			}
			if tt.wantErr == "" {
				deadline := time.Now().Add(10 * time.Second)
				for {
					b, _ := os.ReadFile(mark)
					if strings.Contains(string(b), "db/0 "+c.dir("db/0")) {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("on_change never ran with the unit's environment: %q", b)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			relationtest.AwaitWithin(t, c.members["db/0"], "on_change's failure in status", 10*time.Second, func(s relation.Snapshot) bool {
				return strings.Contains(s.Units["db/0"][protocol.KeyError], "on_change: ") &&
					strings.Contains(s.Units["db/0"][protocol.KeyError], tt.wantErr)
			})
			c.waitCerts("db/0") // still installed and valid
		})
	}
}

// A unit that leaves has its certificate revoked (RevokeDepartedAfter 0: at once): the
// CA signs a CRL listing it and every unit writes it as ca.crl. Back with that
// certificate, the unit renews.
func TestDepartedUnitIsRevokedAndRenewsWhenBack(t *testing.T) {
	c := newCluster(t)
	c.start("db/0")
	c.start("db/1")
	first := c.waitCerts("db/0", "db/1")["db/1"]
	c.stop("db/1")
	crl := awaitCRL(t, c.dir("db/0"), func(serials []*big.Int) bool {
		return slices.ContainsFunc(serials, func(s *big.Int) bool { return s.Cmp(first.SerialNumber) == 0 })
	})
	ca, err := certutil.ParseCertificates(mustReadFile(t, filepath.Join(c.dir("db/0"), CAFile)))
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca[0]); err != nil {
		t.Fatalf("ca.crl is not signed by the group's CA: %v", err)
	}
	if info, err := os.Stat(filepath.Join(c.dir("db/0"), CRLFile)); err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("ca.crl: %v", err)
	}
	c.start("db/1")
	deadline := time.Now().Add(20 * time.Second)
	for {
		certs, err := c.certs([]string{"db/1"})
		if err == nil && certs["db/1"].SerialNumber.Cmp(first.SerialNumber) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("db/1 came back with a revoked certificate and never renewed it")
		}
		time.Sleep(50 * time.Millisecond)
	}
	awaitCRL(t, c.dir("db/1"), func(serials []*big.Int) bool { return len(serials) == 1 })
}

// A unit that leaves for good (NoteGone) is revoked at once, however long departures
// wait: the CRL the signer signs and every unit installs lists it within the delay.
func TestAUnitGoneForGoodIsRevokedAtOnce(t *testing.T) {
	c := newCluster(t)
	c.opts = func(o *Options) { o.RevokeDepartedAfter = time.Hour }
	c.start("db/0")
	c.start("db/1")
	gone := c.waitCerts("db/0", "db/1")["db/1"]
	c.cancel["db/1"]()
	if err := c.members["db/1"].LeaveWithNote(context.Background(), protocol.NoteGone); err != nil {
		t.Fatal(err)
	}
	awaitCRL(t, c.dir("db/0"), func(serials []*big.Int) bool {
		return slices.ContainsFunc(serials, func(s *big.Int) bool { return s.Cmp(gone.SerialNumber) == 0 })
	})
}

func awaitCRL(t *testing.T, dir string, ok func([]*big.Int) bool) *x509.RevocationList {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, CRLFile)); err == nil {
			if crl, err := certutil.ParseCRL(b); err == nil && ok(certutil.Revoked(crl)) {
				return crl
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held the CRL wanted", filepath.Join(dir, CRLFile))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustReadFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// batchCounter signs through the real cfssl backend in batches, counting the calls and
// the CSRs in each, and refuses refuse's CSRs as invalid.
type batchCounter struct {
	sdk.Backend
	refuse string
	mu     sync.Mutex
	sizes  []int
}

func (b *batchCounter) SignCSRs(ctx context.Context, reqs []sdk.SignRequest) ([]sdk.SignResult, error) {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(reqs))
	b.mu.Unlock()
	results, err := b.Backend.(sdk.BatchSigner).SignCSRs(ctx, reqs)
	for i, r := range reqs {
		if r.Unit == b.refuse {
			results[i] = sdk.SignResult{Err: sdk.Errorf(sdk.CodeInvalidArgument, "csr of "+r.Unit, "the signer will not")}
		}
	}
	return results, err
}

// The leader signs the CSRs pending in one decision in one SignCSRs call; a CSR the
// signer refuses in the batch is rejected alone, its neighbours signed.
func TestLeaderSignsPendingCSRsInOneBatch(t *testing.T) {
	c := newCluster(t)
	signer := &batchCounter{Backend: c.backend, refuse: "db/2"}
	c.backend = signer
	// Three units that may not lead publish their CSRs; the leader that comes after
	// finds them pending together.
	for _, u := range []string{"db/1", "db/2", "db/3"} {
		c.startWith(u, false)
	}
	for _, u := range []string{"db/1", "db/2", "db/3"} {
		relationtest.Await(t, c.members[u], u+"'s CSR", func(s relation.Snapshot) bool { return s.Units[u][protocol.KeyCSR] != "" })
	}
	c.start("db/0")
	c.waitCerts("db/0", "db/1", "db/3")
	snap := relationtest.Await(t, c.members["db/0"], "db/2's rejection", func(s relation.Snapshot) bool {
		return s.LeaderData[protocol.RejectionKey("db/2")] != ""
	})
	if r, _ := protocol.DecodeRejection(snap.LeaderData[protocol.RejectionKey("db/2")]); r.Rule != protocol.RuleSigner || !strings.Contains(r.Reason, "the signer will not") {
		t.Errorf("db/2's rejection %+v, want the signer's", r)
	}
	signer.mu.Lock()
	defer signer.mu.Unlock()
	if signer.sizes[0] < 3 {
		t.Errorf("batch sizes %v: want the three pending CSRs (and perhaps the leader's own) in the first", signer.sizes)
	}
}

// recorder notes, in order, the signer's batches and the leader's writes.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

type recordedSigner struct {
	sdk.Backend
	r *recorder
}

func (s recordedSigner) SignCSRs(ctx context.Context, reqs []sdk.SignRequest) ([]sdk.SignResult, error) {
	s.r.note("sign %d", len(reqs))
	return s.Backend.(sdk.BatchSigner).SignCSRs(ctx, reqs)
}

type recordedMember struct {
	relation.Member
	r *recorder
}

func (m recordedMember) SetLeaderData(ctx context.Context, kv map[string]string, guards ...relation.Guard) ([]string, error) {
	certs := 0
	for k, v := range kv {
		if strings.HasSuffix(k, protocol.SignedCertificateKey("")) && v != "" {
			certs++
		}
	}
	m.r.note("publish %d", certs)
	return m.Member.SetLeaderData(ctx, kv, guards...)
}

// A leader with more CSRs than one batch publishes each batch's certificates before it
// signs the next, so that units install theirs while it signs on.
func TestLeaderPublishesEachBatchBeforeSigningTheNext(t *testing.T) {
	ctx := context.Background()
	store := relation.NewMemory(protocol.Schema())
	m, err := store.Join(ctx, "db/0", relation.JoinOptions{LeaderEligible: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	a, err := New(Options{Member: recordedMember{m, rec}, Backends: inProcess{recordedSigner{newCfssl(t, t.TempDir()), rec}},
		Certificate: testCert, Policy: testPolicy, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.loadSignerCA(ctx); err != nil {
		t.Fatal(err)
	}
	const n = maxBatch + 44
	var actions []protocol.Action
	for i := range n {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		unit := fmt.Sprintf("u/%d", i)
		csr, err := certutil.NewCSRForKey(sdk.CSRRequest{CommonName: unit}, key)
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, protocol.SignCSR{Unit: unit, CSRPEM: string(csr.CSRPEM), Profile: "peer", Validity: time.Hour, CA: a.memory.SignerCA})
	}
	if err := a.apply(ctx, actions); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("sign %d", maxBatch), fmt.Sprintf("publish %d", maxBatch), "sign 44", "publish 44"}
	if !slices.Equal(rec.events, want) {
		t.Errorf("signer and relation calls %v, want %v", rec.events, want)
	}
}

// guardRecorder keeps every leader write with its guards.
type guardRecorder struct {
	relation.Member
	writes []guardedWrite
}

type guardedWrite struct {
	kv     map[string]string
	guards []relation.Guard
}

func (m *guardRecorder) SetLeaderData(ctx context.Context, kv map[string]string, guards ...relation.Guard) ([]string, error) {
	m.writes = append(m.writes, guardedWrite{maps.Clone(kv), slices.Clone(guards)})
	return m.Member.SetLeaderData(ctx, kv, guards...)
}

// Every certificate and rejection the leader publishes is guarded by the CSR it answers:
// it lands only while the unit still asks for that CSR.
func TestEveryAnswerIsGuardedByItsCSR(t *testing.T) {
	ctx := context.Background()
	store := relation.NewMemory(protocol.Schema())
	m, err := store.Join(ctx, "db/0", relation.JoinOptions{LeaderEligible: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := &guardRecorder{Member: m}
	a, err := New(Options{Member: rec, Backends: inProcess{newCfssl(t, t.TempDir())}, Certificate: testCert, Policy: testPolicy, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.loadSignerCA(ctx); err != nil {
		t.Fatal(err)
	}
	csrs := map[string]string{}
	for _, unit := range []string{"u/1", "u/2"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, err := certutil.NewCSRForKey(sdk.CSRRequest{CommonName: unit}, key)
		if err != nil {
			t.Fatal(err)
		}
		csrs[unit] = string(csr.CSRPEM)
	}
	err = a.apply(ctx, []protocol.Action{
		protocol.SignCSR{Unit: "u/1", CSRPEM: csrs["u/1"], Profile: "peer", Validity: time.Hour, CA: a.memory.SignerCA},
		protocol.RejectCSR{Unit: "u/2", CSRPEM: csrs["u/2"], Rejection: protocol.Rejection{CSRDigest: protocol.Digest(csrs["u/2"]), Reason: "no"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	answers := 0
	for _, w := range rec.writes {
		for key := range w.kv {
			unit, ok := protocol.Schema().UnitOfLeaderKey(key)
			if !ok {
				continue
			}
			answers++
			guarded := slices.ContainsFunc(w.guards, func(g relation.Guard) bool {
				return g.Unit == unit && g.Field == protocol.KeyCSR && g.Value == csrs[unit] && slices.Contains(g.Keys, key)
			})
			if !guarded {
				t.Errorf("%s is published without a guard on %s's CSR (guards %+v)", key, unit, w.guards)
			}
		}
	}
	if answers < 2 {
		t.Fatalf("the leader published %d answers, want a certificate and a rejection", answers)
	}
}

// statusRefuser refuses the unit's writes of a settled status while refusing is set,
// as a store does between a lost lease and the next join.
type statusRefuser struct {
	relation.Member
	refusing atomic.Bool
	refused  atomic.Int32
}

func (m *statusRefuser) SetUnitData(ctx context.Context, kv map[string]string) error {
	if m.refusing.Load() && kv[protocol.KeyState] == string(protocol.StateCertificateAvailable) {
		m.refused.Add(1)
		return fmt.Errorf("%s: %w (rejoining after a lost lease)", m.Unit(), relation.ErrNotJoined)
	}
	return m.Member.SetUnitData(ctx, kv)
}

// A unit whose write of its settled status failed writes it again soon, though nothing
// else changes: it kept reporting its state from before for up to an hour (the next
// wake-up), and a leader waiting on its serial waited with it.
func TestAFailedStatusWriteIsTriedAgain(t *testing.T) {
	c := newCluster(t)
	refuser := &statusRefuser{}
	refuser.refusing.Store(true)
	c.opts = func(o *Options) { refuser.Member = o.Member; o.Member = refuser }
	c.start("db/0")
	c.waitCerts("db/0")
	for deadline := time.Now().Add(10 * time.Second); refuser.refused.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("db/0 never tried to write its settled status")
		}
	}
	refuser.refusing.Store(false)
	for deadline := time.Now().Add(40 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		snap, err := c.store.Observe(context.Background())
		if err == nil {
			s, _ := snap.Snapshot(context.Background())
			snap.Close()
			if s.Units["db/0"][protocol.KeyState] == string(protocol.StateCertificateAvailable) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("db/0's bag never said %q after %d refused writes", protocol.StateCertificateAvailable, refuser.refused.Load())
		}
	}
}
