package agent

import (
	"context"
	"fmt"
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

func (a *Agent) report(leader bool, d protocol.Decision, local protocol.Local) {
	s := Status{Unit: a.unit, Leader: leader, Signing: d.Signing,
		UnitStatus: protocol.UnitStatus{State: d.State, Detail: d.Detail, Error: d.LeaderProblem, CAState: d.CAState, Noisy: a.noisy}}
	if leader {
		s.Custody = string(a.memory.Signer.Custody)
		s.NoCRL = a.memory.SignerCA != "" && !a.memory.SignsCRL
	}
	a.opts.Metrics.RevocationUnsupported(a.unit, s.NoCRL)
	// Whether a rotation is blocked is decided only in the steady state; a decision
	// that loads the signer's CA (again, for a remote CA) leaves it as it was.
	if !leader || d.CAState == protocol.CASteady {
		if d.CARotationBlocked != "" && d.CARotationBlocked != a.blocked {
			a.log.Warn("a CA rotation is due but cannot proceed; signing goes on", "problem", d.CARotationBlocked)
		}
		a.blocked = d.CARotationBlocked
		a.opts.Metrics.CARotationBlocked(a.unit, leader && a.blocked != "")
	}
	if a.noisy != "" && a.noisy != a.last.Noisy {
		a.log.Warn("units write their bags more often than the budget", "budget_per_minute", protocol.WriteBudget, "units", a.noisy)
	}
	if err := a.onChange.status(); s.Error == "" && err != "" {
		s.Error = "on_change: " + err
	}
	if d.ClockSkew > 0 && s.Error == "" {
		s.Error = fmt.Sprintf("the certificate signed for this unit starts %s after this host's clock says it is now: "+
			"this host's clock or the leader's is wrong (check NTP on both); waiting until then", d.ClockSkew.Round(time.Second))
		if s.Error != a.last.Error {
			a.log.Warn("clock skew", "problem", s.Error)
		}
	}
	a.opts.Metrics.ClockSkew(a.unit, d.ClockSkew)
	if d.LeaderProblem != "" && d.LeaderProblem != a.last.Error {
		a.log.Error("leader cannot sign", "problem", d.LeaderProblem)
	}
	var renewAt time.Time
	if cert := leaf(local); cert != nil {
		s.Serial, s.NotAfter, s.Trusts = cert.SerialNumber.Text(16), cert.NotAfter, a.parsed.TrustsOf(local.Installed.CAPEM)
		renewAt = protocol.RenewalTime(cert, a.want)
	}
	a.opts.Metrics.Expires(a.unit, s.NotAfter, renewAt)
	a.opts.Metrics.Leading(a.unit, leader)
	if s.State != a.last.State || s.Leader != a.last.Leader || s.Serial != a.last.Serial || s.Trusts != a.last.Trusts || s.CAState != a.last.CAState || s.Noisy != a.last.Noisy || s.Custody != a.last.Custody || s.NoCRL != a.last.NoCRL || len(s.Signing) != len(a.last.Signing) || s.Error != a.last.Error {
		a.log.Info("state", "state", s.State, "detail", s.Detail, "leader", s.Leader)
		if a.opts.OnStatus != nil {
			a.opts.OnStatus(s)
		}
	}
	a.last = s
	a.health.Store(&s)
}

// Leading says whether the unit led at its last step; safe from any goroutine.
func (a *Agent) Leading() bool {
	s := a.health.Load()
	return s != nil && s.Leader
}

// Health says whether the unit holds a certificate that has not expired, with its state
// and last error; safe from any goroutine (the /healthz handler).
func (a *Agent) Health() (ok bool, detail string) {
	s := a.health.Load()
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
// it reports. A failure here is logged, not returned: the next step publishes again, and
// a leader judges only what it can check against what it issued.
func (a *Agent) publishStatus(ctx context.Context, stepErr error) {
	s := a.last
	if stepErr != nil {
		s.Error = stepErr.Error()
		// One error shown replaces another at most every errorEvery: a failing step
		// (a full disk) is tried again and again, and each write is a revision of etcd
		// that every member reads. An error clears at once.
		if prev := a.published[protocol.KeyError]; prev != "" && prev != s.Error && a.opts.Now().Sub(a.errorAt) < errorEvery {
			s.Error = prev
		}
	}
	a.opts.Metrics.UnitError(a.unit, s.Error != "")
	fields := s.Fields()
	changed := map[string]string{}
	for k, v := range fields {
		// Nothing published yet by this agent: write every field, empty ones too, so
		// a predecessor's stale value (an error before a reload) is cleared.
		if a.published == nil || a.published[k] != v {
			changed[k] = v
		}
	}
	if len(changed) == 0 {
		return
	}
	if err := a.opts.Member.SetUnitData(ctx, changed); err != nil {
		a.log.Debug("could not publish status", "error", err)
		return
	}
	if fields[protocol.KeyError] != a.published[protocol.KeyError] {
		a.errorAt = a.opts.Now()
	}
	a.published = fields
}

// errorEvery is how often at most a unit's published error changes from one to another.
const errorEvery = 15 * time.Second

// StatusFromBag reads the status a unit published in its bag.
func StatusFromBag(unit string, leader bool, bag map[string]string) Status {
	return Status{Unit: unit, Leader: leader, UnitStatus: protocol.DecodeUnitStatus(bag)}
}
