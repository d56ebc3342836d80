package agent

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// Status is what a unit reports: what it publishes in its bag (protocol.UnitStatus),
// with who it is and, while it leads, whom it is signing for.
type Status struct {
	Unit    string
	Leader  bool
	Signing []string
	protocol.UnitStatus
}

// reported is what the unit last said of itself: kept to say each change once (a log
// line, OnStatus, a metric) and to write to its bag only the fields that changed. It
// remembers what was said, never what to decide: that is the protocol's.
type reported struct {
	last      Status                 // the status last reported
	published map[string]string      // the status fields last written to the bag
	errorAt   time.Time              // when the published error last changed
	blocked   string                 // while leading: why a CA rotation due cannot proceed (logged once)
	health    atomic.Pointer[Status] // the last status, for Health from other goroutines
	// trusted is the last TrustedCAs worked out, with what it was worked out from: a
	// chain is checked by signatures, which each step need not do again.
	trusted struct{ caFile, bundle, chain, fps string }
}

// report makes the unit's status from decision d, says what changed, and keeps it.
// noisy names the units over their write budget, as the leader publishes them; group is
// the leader data the decision read.
func (a *Agent) report(leader bool, d protocol.Decision, local protocol.Local, noisy string, group map[string]string) {
	r := &a.reported
	s := Status{Unit: a.unit, Leader: leader, Signing: d.Signing,
		UnitStatus: protocol.UnitStatus{State: d.State, Detail: d.Detail, Error: d.LeaderProblem, CAState: d.CAState, Noisy: noisy}}
	if leader {
		s.Custody = string(a.memory.Signer.Custody)
		s.NoCRL = a.memory.SignerCA != "" && !a.memory.SignsCRL
	}
	a.opts.Metrics.RevocationUnsupported(a.unit, s.NoCRL)
	// Whether a rotation is blocked is decided only in the steady state; a decision
	// that loads the signer's CA (again, for a remote CA) leaves it as it was.
	if !leader || d.CAState == protocol.CASteady {
		if d.CARotationBlocked != "" && d.CARotationBlocked != r.blocked {
			a.log.Warn("a CA rotation is due but cannot proceed; signing goes on", "problem", d.CARotationBlocked)
		}
		r.blocked = d.CARotationBlocked
		a.opts.Metrics.CARotationBlocked(a.unit, leader && r.blocked != "")
	}
	if noisy != "" && noisy != r.last.Noisy {
		a.log.Warn("units write their bags more often than the budget", "budget_per_minute", protocol.WriteBudget, "units", noisy)
	}
	if err := a.onChange.status(); s.Error == "" && err != "" {
		s.Error = "on_change: " + err
	}
	if d.ClockSkew > 0 && s.Error == "" {
		s.Error = fmt.Sprintf("the certificate signed for this unit starts %s after this host's clock says it is now: "+
			"this host's clock or the leader's is wrong (check NTP on both); waiting until then", d.ClockSkew.Round(time.Second))
		if s.Error != r.last.Error {
			a.log.Warn("clock skew", "problem", s.Error)
		}
	}
	a.opts.Metrics.ClockSkew(a.unit, d.ClockSkew)
	if d.LeaderProblem != "" && d.LeaderProblem != r.last.Error {
		a.log.Error("leader cannot sign", "problem", d.LeaderProblem)
	}
	var renewAt time.Time
	if cert := leaf(local); cert != nil {
		s.Serial, s.NotAfter, s.Trusts = cert.SerialNumber.Text(16), cert.NotAfter, a.parsed.TrustsOf(local.Installed.CAPEM)
		if chain := group[protocol.KeyCAChain]; chain != "" {
			// ca.crt holds the roots: the signing CAs they anchor are trusted too.
			t, bundle := &r.trusted, group[protocol.KeyCA]
			if t.caFile != local.Installed.CAPEM || t.bundle != bundle || t.chain != chain {
				t.caFile, t.bundle, t.chain = local.Installed.CAPEM, bundle, chain
				t.fps = strings.Join(protocol.TrustedCAs(t.caFile, bundle, chain), ",")
			}
			s.Trusts = t.fps
		}
		renewAt = protocol.RenewalTime(cert, a.want)
	}
	a.opts.Metrics.Expires(a.unit, s.NotAfter, renewAt)
	a.opts.Metrics.Leading(a.unit, leader)
	if s.State != r.last.State || s.Leader != r.last.Leader || s.Serial != r.last.Serial || s.Trusts != r.last.Trusts || s.CAState != r.last.CAState || s.Noisy != r.last.Noisy || s.Custody != r.last.Custody || s.NoCRL != r.last.NoCRL || len(s.Signing) != len(r.last.Signing) || s.Error != r.last.Error {
		a.log.Info("state", "state", s.State, "detail", s.Detail, "leader", s.Leader)
		if a.opts.OnStatus != nil {
			a.opts.OnStatus(s)
		}
	}
	r.last = s
	r.health.Store(&s)
}

// Leading says whether the unit led at its last step; safe from any goroutine.
func (a *Agent) Leading() bool {
	s := a.reported.health.Load()
	return s != nil && s.Leader
}

// Health says whether the unit holds a certificate that has not expired, with its state
// and last error; safe from any goroutine (the /healthz handler).
func (a *Agent) Health() (ok bool, detail string) {
	s := a.reported.health.Load()
	if s == nil {
		return false, a.unit + ": starting"
	}
	detail = fmt.Sprintf("%s: %s", a.unit, s.State)
	if s.Error != "" {
		detail += ": " + s.Error
	}
	if s.NotAfter.IsZero() {
		return false, detail + " (no certificate yet)"
	}
	if !a.opts.Now().Before(s.NotAfter) {
		return false, detail + fmt.Sprintf(" (the certificate expired at %s)", s.NotAfter.UTC().Format(time.RFC3339))
	}
	return true, detail
}

// publishStatus writes the unit's status into its bag when it changed: for `status`, and
// for the leader, whose revocations and CA rotations wait on the serial and trusted CAs
// it reports. It says whether the bag holds it now: a failed write is tried again soon
// (runProtocol), not only at the next change, which for a settled unit may be an hour
// away (a unit back from a lost lease once kept reporting its revoked certificate).
func (a *Agent) publishStatus(ctx context.Context, stepErr error) (published bool) {
	r := &a.reported
	s := r.last
	if stepErr != nil {
		s.Error = stepErr.Error()
		// One error shown replaces another at most every errorEvery: a failing step
		// (a full disk) is tried again and again, and each write is a revision of etcd
		// that every member reads. An error clears at once.
		if prev := r.published[protocol.KeyError]; prev != "" && prev != s.Error && a.opts.Now().Sub(r.errorAt) < errorEvery {
			s.Error = prev
		}
	}
	a.opts.Metrics.UnitError(a.unit, s.Error != "")
	fields := s.Fields()
	changed := map[string]string{}
	for k, v := range fields {
		// Nothing published yet by this agent: write every field, empty ones too, so
		// a predecessor's stale value (an error before a reload) is cleared.
		if r.published == nil || r.published[k] != v {
			changed[k] = v
		}
	}
	if len(changed) == 0 {
		return true
	}
	if err := a.opts.Member.SetUnitData(ctx, changed); err != nil {
		a.log.Debug("could not publish status; trying again soon", "error", err)
		return false
	}
	if fields[protocol.KeyError] != r.published[protocol.KeyError] {
		r.errorAt = a.opts.Now()
	}
	r.published = fields
	return true
}

// errorEvery is how often at most a unit's published error changes from one to another.
const errorEvery = 15 * time.Second

// StatusFromBag reads the status a unit published in its bag.
func StatusFromBag(unit string, leader bool, bag map[string]string) Status {
	return Status{Unit: unit, Leader: leader, UnitStatus: protocol.DecodeUnitStatus(bag)}
}
