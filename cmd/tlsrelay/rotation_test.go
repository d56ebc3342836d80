package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/app/status"
)

// A group with one-minute certificates stays valid across three renewals of every unit,
// then rotates to a new CA (tlsrelay ca rotate) and ends with the old CA gone, while
// every pair of units handshakes with mutual TLS all along, each side using what its
// files hold at that moment. Not one handshake may fail.
func TestRenewalsAndCARotationWithoutAFailedHandshake(t *testing.T) {
	ag, obs, _ := embeddedGroup(t, "rotation", 6*time.Second, "certificate: {validity: 1m, renew_at: 0.25, renew_jitter: 0.05}\n", true)
	units := []string{"web/0", "web/1", "web/2"}
	for _, u := range units {
		ag.start(u)
	}
	serials := map[string]map[string]bool{}
	allHave := func(s relation.Snapshot, n int) bool {
		for _, u := range units {
			if serials[u] == nil {
				serials[u] = map[string]bool{}
			}
			if available(s, u) {
				serials[u][s.Units[u][protocol.KeySerial]] = true
			}
			if len(serials[u]) < n {
				return false
			}
		}
		return true
	}
	snap := awaitObs(t, obs, "3 units with certificates", time.Minute, func(s relation.Snapshot) bool { return allHave(s, 1) })
	oldCA := caFingerprint(t, snap.LeaderData[protocol.KeyCA])

	h := startHandshakes(t, ag, units)
	// Three renewals each: four certificates per unit.
	awaitObs(t, obs, "every unit renewed 3 times", 3*time.Minute, func(s relation.Snapshot) bool { return allHave(s, 4) })
	renewed := h.count.Load()

	// A unit that does not lead is frozen when the rotation starts (a slow host): its
	// files keep the old bundle, and the trust phase must wait for it, or its peers' new
	// certificates fail at it.
	frozen := units[0]
	if s, _ := obs.Snapshot(context.Background()); s.Leader == frozen {
		frozen = units[1]
	}
	ag.signal(frozen, syscall.SIGSTOP)
	rotated := make(chan result, 1)
	go func() { rotated <- runBinary(t, ag.bin, "ca", "rotate", "--config", ag.config, "--timeout", "2m") }()
	time.Sleep(3 * time.Second)
	ag.signal(frozen, syscall.SIGCONT)
	r := <-rotated
	if !strings.Contains(r.stdout, "waiting for "+frozen) && !strings.Contains(r.stdout, ", "+frozen) {
		t.Errorf("the trust phase did not wait for the frozen %s:\n%s", frozen, r.stdout)
	}
	if r.code != 0 || !strings.Contains(r.stdout, "done: the group signs with CA") {
		t.Fatalf("ca rotate exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, phase := range []string{protocol.PhaseTrust, protocol.PhaseReissue} {
		if !strings.Contains(r.stdout, "phase "+phase) {
			t.Errorf("ca rotate did not report the %s phase:\n%s", phase, r.stdout)
		}
	}
	snap = awaitObs(t, obs, "every unit on the new CA alone", time.Minute, func(s relation.Snapshot) bool {
		bundle := protocol.TrustsOf(s.LeaderData[protocol.KeyCA])
		for _, u := range units {
			if !available(s, u) || s.Units[u][protocol.KeyTrusts] != bundle {
				return false
			}
		}
		return !strings.Contains(bundle, ",")
	})
	newCA := caFingerprint(t, snap.LeaderData[protocol.KeyCA])
	if newCA == oldCA {
		t.Fatal("the CA did not change")
	}
	time.Sleep(2 * time.Second) // handshakes on the final files
	failures := h.stop()
	total := h.count.Load()
	t.Logf("%d handshakes, %d during renewals, %d during and after the rotation", total, renewed, total-renewed)
	if len(failures) > 0 {
		t.Fatalf("%d handshakes failed; first: %s", len(failures), failures[0])
	}
	if renewed < 50 || total-renewed < 20 {
		t.Fatalf("too few handshakes to tell: %d during renewals, %d after", renewed, total-renewed)
	}
	for _, u := range units {
		caPEM, err := os.ReadFile(filepath.Join(ag.unitDir(u), "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if got := protocol.TrustsOf(string(caPEM)); got != newCA {
			t.Errorf("%s's ca.crt trusts %s, want the new CA %s alone", u, got, newCA)
		}
	}
	st := runBinary(t, ag.bin, "status", "--config", ag.config, "--json")
	var g status.Group
	if err := json.Unmarshal([]byte(st.stdout), &g); err != nil || g.CAState != protocol.CASteady || g.CARotation != nil || len(g.CABundle) != 1 {
		t.Errorf("status after the rotation: %v\n%s", err, st.stdout)
	}
}

// handshakes runs mutual-TLS handshakes between every ordered pair of units, over and
// over, until stopped. Each side reads its files before each handshake, as a server
// reloading on change would; a key and certificate caught mid-replacement (two files,
// two renames) do not load, and that side keeps the pair it had, as a server's failed
// reload keeps the old one.
type handshakes struct {
	count    atomic.Int64
	mu       sync.Mutex
	failures []string
	cancel   context.CancelFunc
	done     chan struct{}
}

func startHandshakes(t *testing.T, ag *agents, units []string) *handshakes {
	ctx, cancel := context.WithCancel(context.Background())
	h := &handshakes{cancel: cancel, done: make(chan struct{})}
	sides := map[string]*side{}
	for _, u := range units {
		sides[u] = &side{unit: u, dir: ag.unitDir(u)}
		if err := sides[u].reload(); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
	}
	go func() {
		defer close(h.done)
		for ctx.Err() == nil {
			for _, a := range units {
				for _, b := range units {
					if a == b {
						continue
					}
					sides[a].reload()
					sides[b].reload()
					if err := handshake(sides[a], sides[b]); err != nil {
						h.mu.Lock()
						h.failures = append(h.failures, fmt.Sprintf("%s -> %s at %s: %v", a, b, time.Now().Format(time.TimeOnly), err))
						h.mu.Unlock()
					}
					h.count.Add(1)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *handshakes) stop() []string {
	h.cancel()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures
}

// side is one unit's TLS identity as its files hold it.
type side struct {
	unit, dir string
	cert      tls.Certificate
	roots     *x509.CertPool
}

func (s *side) reload() error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key"))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(s.dir, "ca.crt"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s: ca.crt holds no certificate", s.unit)
	}
	s.cert, s.roots = cert, roots
	return nil
}

// handshake: client a connects to server b; both verify the other's certificate and b's
// name.
func handshake(a, b *side) error {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	server := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{b.cert}, ClientCAs: b.roots,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})
	client := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{a.cert}, RootCAs: a.roots,
		ServerName: protocol.UnitDNSName(b.unit), MinVersion: tls.VersionTLS13})
	deadline := time.Now().Add(5 * time.Second)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	cerr := client.Handshake()
	serr := <-errc
	if cerr != nil {
		return fmt.Errorf("client: %w (server: %v)", cerr, serr)
	}
	return serr
}

// `ca rotate --dir DIR` after `up` has finished: no unit leads (the group stopped with
// up), so nothing would act on the request; it says so at once instead of waiting out
// --timeout.
func TestRotateWithNoLeaderFailsAtOnce(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "up")
	if r := run(t, "up", "--dir", dir, "--units", "1"); r.code != 0 {
		t.Fatalf("up: exit %d\n%s", r.code, r.stderr)
	}
	// Its own message, not the one --timeout ends a wait with.
	r := run(t, "ca", "rotate", "--dir", dir, "--timeout", "2m")
	if r.code == 0 || !strings.Contains(r.stderr, "no unit of relation") || !strings.Contains(r.stderr, "--wait=false") {
		t.Fatalf("ca rotate with no leader: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
