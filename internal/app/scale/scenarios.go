package scale

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/internal/app/swarm"
	"github.com/tlsrelay/tlsrelay/internal/proctree"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// converge joins the simulated units and waits until every one holds a certificate.
func (r *run) converge(ctx context.Context) error {
	leader, lp := r.leaderProcess()
	_, _, rev0 := r.etcdFigures(ctx)
	leaderBefore, etcdBefore := usageOf(lp.pid()), usageOf(r.etcd.pid())
	t0 := time.Now()
	report := time.Now()
	if _, err := r.swarm.Join(ctx, "node", r.opts.Units, r.opts.Parallel, func(n int) {
		if time.Since(report) > 5*time.Second {
			report = time.Now()
			r.printf("  %s: %d joined", time.Since(t0).Round(time.Second), n)
		}
	}); err != nil {
		return err
	}
	joined := time.Since(t0)
	if err := r.awaitCertified(ctx, t0); err != nil {
		return err
	}
	took := time.Since(t0)
	leaderAfter, etcdAfter := usageOf(lp.pid()), usageOf(r.etcd.pid())
	size, inUse, rev := r.etcdFigures(ctx)
	writes := rev - rev0
	selfRSS, selfPeak := proctree.Memory(os.Getpid())
	r.printf("converge: %d units hold certificates after %s (all joined after %s)", r.opts.Units, took.Round(time.Millisecond), joined.Round(time.Millisecond))
	r.printf("  leader %s: cpu %.1f s over the run; %s", leader, (leaderAfter.CPU - leaderBefore.CPU).Seconds(), leaderAfter)
	r.printf("  etcd: %d revisions (%.0f writes/s), db %s (%s in use), cpu %.1f s, rss %s, peak %s",
		writes, float64(writes)/took.Seconds(), mib(size), mib(inUse), (etcdAfter.CPU - etcdBefore.CPU).Seconds(), mib(etcdAfter.RSS), mib(etcdAfter.PeakRSS))
	r.printf("  each unit would read %d bytes by its own watches (mean); the swarm's one watch read %d bytes; this process: rss %s, peak %s; leases lost and joined again: %d",
		r.swarm.BytesPerUnit(), r.swarm.WatchBytes(), mib(selfRSS), mib(selfPeak), r.swarm.LostLeases())
	return nil
}

// awaitCertified waits until every joined unit holds a certificate, saying how many do
// every 5 s.
func (r *run) awaitCertified(ctx context.Context, t0 time.Time) error {
	report := time.Now()
	return r.await(ctx, "every unit to hold a certificate", 30*time.Minute, func() bool {
		n, of := r.swarm.Count((*swarm.Unit).Certified)
		if time.Since(report) > 5*time.Second {
			report = time.Now()
			r.printf("  %s: %d of %d hold certificates", time.Since(t0).Round(time.Second), n, of)
		}
		return n == of
	})
}

// failover kills the leader's agent and its plugins with SIGKILL, as a host that dies,
// has a new unit ask at once, and times the first signature after it: the lease TTL,
// then a standby's election, its read of the relation, its signer and the signature.
func (r *run) failover(ctx context.Context) error {
	name, lp := r.leaderProcess()
	if lp == nil {
		return fmt.Errorf("the leader %q is not one of this run's agents", name)
	}
	t0 := time.Now()
	lp.kill()
	delete(r.agents, name)
	late, err := r.swarm.Join(ctx, "late", 1, 1, nil)
	if err != nil {
		return err
	}
	var elected time.Duration
	if err := r.await(ctx, "a new leader", 5*time.Minute, func() bool {
		l := r.swarm.Leader()
		return l != "" && l != name
	}); err != nil {
		return err
	}
	elected = time.Since(t0)
	if err := r.await(ctx, "the new unit's certificate", 5*time.Minute, late[0].Certified); err != nil {
		return err
	}
	signed := time.Since(t0)
	newLeader, np := r.leaderProcess()
	u := usageOf(np.pid())
	// The old leader's lease expires at most a TTL after its last renewal, which came up
	// to a third of a TTL before the kill: the election is what the TTL costs, and
	// what follows it is what the new leader costs (reading the relation, starting its
	// signer, signing).
	r.printf("failover: killed %s (-9, with its plugins); %s elected after %s (lease TTL %s); the new unit %s certified after %s: %s after the election, %s after the TTL",
		name, newLeader, elected.Round(time.Millisecond), r.opts.LeaseTTL, late[0].Name(), signed.Round(time.Millisecond),
		(signed - elected).Round(time.Millisecond), (signed - r.opts.LeaseTTL).Round(time.Millisecond))
	r.printf("  new leader %s: %s (agent alone: peak rss %s)", newLeader, u, mib(u.OwnPeak))
	return r.startAgent(name) // back as a standby for what follows
}

// rotate asks the leader for a CA rotation (as `tlsrelay ca rotate` does) and times it
// until every unit holds a certificate of the new CA and trusts only it, while pairs of
// units complete mutual-TLS handshakes throughout, each with what it holds at the time.
func (r *run) rotate(ctx context.Context) error {
	cfg := *r.opts.Config
	cfg.Relation.Store, cfg.Relation.Etcd.Endpoints = config.StoreEtcd, []string{r.endpoint}
	store, err := assemble.Etcd(&cfg, r.opts.Log)
	if err != nil {
		return err
	}
	defer store.Close()
	oldCA := r.swarm.LeaderData(protocol.KeyCA)
	_, lp := r.leaderProcess()
	before := usageOf(lp.pid())
	units := r.swarm.Units()
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	pairs := min(r.opts.Pairs, len(units)/2)
	for w := range min(4, pairs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i = (i + 4) % max(pairs, 1) {
				select {
				case <-stop:
					return
				default:
				}
				a, b := units[(2*i)*len(units)/(2*pairs)], units[(2*i+1)*len(units)/(2*pairs)]
				if err := swarm.Handshake(ctx, a, b); err != nil {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 5 {
						failures = append(failures, err.Error())
					}
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	t0 := time.Now()
	if err := store.Request(ctx, protocol.RequestRotateCA, id); err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	var phases []string
	last := ""
	err = r.await(ctx, "the rotation to end", 30*time.Minute, func() bool {
		rot, _ := protocol.DecodeRotation(r.swarm.LeaderData(protocol.KeyCARotation))
		if rot.Phase != last {
			last = rot.Phase
			phases = append(phases, fmt.Sprintf("%s at %s", nonEmpty(rot.Phase, "none"), time.Since(t0).Round(time.Millisecond)))
		}
		if r.swarm.LeaderData(protocol.KeyCARequest) != id || rot.Phase != "" {
			return false
		}
		ca := r.swarm.LeaderData(protocol.KeyCA)
		n, of := r.swarm.Count(func(u *swarm.Unit) bool { return u.Holds(ca) })
		return ca != oldCA && n == of
	})
	took := time.Since(t0)
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	after := usageOf(lp.pid())
	r.printf("rotate: %d units hold the new CA's certificates and trust only it after %s; phases: %v", len(units), took.Round(time.Millisecond), phases)
	r.printf("  handshakes throughout: %d completed, %d failed %v", ok.Load(), failed.Load(), failures)
	r.printf("  leader: cpu %.1f s during the rotation; %s", (after.CPU - before.CPU).Seconds(), after)
	return nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// revoke has waves of units depart as dead hosts do (their leases gone, no note) and
// times, for each wave, the leader's CRL listing every one of their certificates and
// every remaining unit holding that CRL, against ca.revoke_departed_after.
func (r *run) revoke(ctx context.Context) error {
	for i, n := range r.opts.Waves {
		units := r.swarm.Units()
		if n >= len(units) {
			return fmt.Errorf("wave %d: %d units to depart of %d", i+1, n, len(units))
		}
		gone := units[len(units)-n:]
		serials := map[string]bool{}
		for _, u := range gone {
			if m := u.Material(); m.Cert != nil {
				serials[m.Cert.SerialNumber.Text(16)] = true
			}
		}
		_, lp := r.leaderProcess()
		before, lost := usageOf(lp.pid()), r.swarm.LostLeases()
		t0 := time.Now()
		sem := make(chan struct{}, max(r.opts.Parallel, 1))
		var wg sync.WaitGroup
		var failed atomic.Pointer[error]
		for _, u := range gone {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := r.swarm.Leave(ctx, u); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}()
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			return *err
		}
		left := time.Now()
		lists := crlChecker{want: serials, seen: map[string]bool{}}
		var signed time.Duration
		err := r.await(ctx, "every unit to hold a CRL listing the departed", 30*time.Minute, func() bool {
			if signed == 0 && lists.lists(r.swarm.LeaderData(protocol.KeyCRL)) {
				signed = time.Since(left)
			}
			if signed == 0 {
				return false
			}
			n, of := r.swarm.Count(func(u *swarm.Unit) bool { return lists.lists(u.CRL()) })
			return n == of
		})
		if err != nil {
			return fmt.Errorf("wave %d: %w", i+1, err)
		}
		installed := time.Since(left)
		after := usageOf(lp.pid())
		crl := r.swarm.LeaderData(protocol.KeyCRL)
		entries := 0
		parseStart := time.Now()
		if parsed, err := parseCRL(crl); err == nil {
			entries = len(parsed.RevokedCertificateEntries)
		}
		parseTook := time.Since(parseStart)
		r.printf("revoke wave %d: %d units departed in %s; the CRL listing them signed %s and held by all %d others %s after the last left (%s after the %s delay)",
			i+1, n, left.Sub(t0).Round(time.Millisecond), signed.Round(time.Millisecond), len(units)-n, installed.Round(time.Millisecond),
			(installed - r.opts.RevokeAfter).Round(time.Millisecond), r.opts.RevokeAfter)
		records, recordBytes := r.swarm.LeaderDataSize(protocol.IsRevocationKey)
		r.printf("  CRL: %d entries, %d bytes, parsed by a unit in %s; revocation records: %d keys, %d bytes; leader cpu %.1f s in the wave; %s; leases lost: %d",
			entries, len(crl), parseTook.Round(time.Microsecond), records, recordBytes,
			(after.CPU - before.CPU).Seconds(), after, r.swarm.LostLeases()-lost)
	}
	return nil
}

// crlChecker says whether a CRL lists every serial wanted, parsing each distinct CRL once.
type crlChecker struct {
	want map[string]bool
	seen map[string]bool
}

func (c *crlChecker) lists(pemText string) bool {
	if pemText == "" {
		return false
	}
	if v, ok := c.seen[pemText]; ok {
		return v
	}
	crl, err := parseCRL(pemText)
	ok := err == nil
	if ok {
		listed := map[string]bool{}
		for _, e := range crl.RevokedCertificateEntries {
			listed[e.SerialNumber.Text(16)] = true
		}
		for s := range c.want {
			if !listed[s] {
				ok = false
				break
			}
		}
	}
	c.seen[pemText] = ok
	return ok
}

func parseCRL(pemText string) (*x509.RevocationList, error) {
	return certutil.ParseCRL([]byte(pemText))
}
