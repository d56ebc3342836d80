package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/backoff"

	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// The wait after a failed step before the agent tries again grows between these.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 30 * time.Second
)

func (a *Agent) runProtocol(ctx context.Context) error {
	retry := backoff.New(minBackoff, maxBackoff)
	for {
		if ctx.Err() != nil { // checked here too: a unit that acts every round never waits below
			return nil
		}
		snap, err := a.opts.Member.Snapshot(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: relation: %w", a.unit, err)
		}
		stepCtx, cancel := context.WithTimeout(ctx, a.opts.StepTimeout)
		acted, err := a.step(stepCtx, snap)
		cancel()
		statusOK := true
		if err != nil || !acted || a.reported.last.Leader {
			// A unit's status is published when it settles (or fails), not after every
			// action: the states it passes through on the way (a CSR made, a certificate
			// being installed) would each be a write to etcd. The leader's is published
			// as it goes: it says what the group's CA is doing (a rotation's phases)
			// and whom it is signing for, while it is busy doing it.
			statusOK = a.publishStatus(ctx, err)
		}
		if fault.IsPermanent(err) {
			a.log.Error("stopping: trying again cannot mend this", "error", err)
			return err
		}
		wait := a.nextWake()
		switch {
		case err != nil:
			// Sooner if the relation changes: what failed may depend on it. The unit's
			// own status write does not count: it changes only with the kind of error
			// (publishStatus), so a failing unit does not wake itself.
			wait = retry.Next()
			a.log.Warn("step failed; will retry, sooner if the relation changes", "error", err, "in", wait.Round(time.Millisecond))
		case acted:
			retry.Reset()
			continue // our own writes changed the view: decide again at once
		case !statusOK:
			wait = retry.Next() // the bag lags what the unit holds: write it again soon
		case a.opts.Once && a.reported.last.State == protocol.StateCertificateAvailable:
			a.log.Info("converged: the certificate is current; exiting (once)")
			return nil
		default:
			retry.Reset()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-snap.Changed:
			if a.reported.last.Leader && !a.gather(ctx) {
				timer.Stop()
				return nil
			}
		case <-a.poke:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// leaderGather is how long a leader lets changes gather after one arrives before it
// decides: a group that starts at once sends its CSRs within moments of one another,
// and one decision signs them all (one batch, one relation write) where it would
// otherwise make a decision, each O(units), per CSR.
const leaderGather = 20 * time.Millisecond

// gather waits leaderGather; false if ctx ended meanwhile.
func (a *Agent) gather(ctx context.Context) bool {
	t := time.NewTimer(leaderGather)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// skewRecheck is how often a unit waiting out a clock skew looks again.
const skewRecheck = 10 * time.Second

// nextWake is how long to sleep when nothing changes: until the last decision changes
// with time alone (renewal due, the leader's revocations and CRL), at most an hour.
func (a *Agent) nextWake() time.Duration {
	wait := time.Hour
	if !a.wake.IsZero() {
		wait = min(wait, max(a.wake.Sub(a.opts.Now()), time.Second))
	}
	if a.skewed { // a clock put right (NTP) makes the certificate valid sooner
		wait = min(wait, skewRecheck)
	}
	return wait
}

// step makes one decision and carries out its actions. acted says whether anything was done.
func (a *Agent) step(ctx context.Context, snap relation.Snapshot) (acted bool, err error) {
	local, notes, err := a.files.loadLocal()
	if err != nil {
		return false, fmt.Errorf("%s: %w", a.unit, err)
	}
	for _, note := range notes {
		a.log.Warn(note)
	}
	leader := snap.Leader == a.unit
	if noCRL := snap.Leader != "" && snap.Units[snap.Leader][protocol.KeyNoCRL] == "true"; a.noCRL.Swap(noCRL) != noCRL && noCRL {
		a.onChange.changed() // a run that waited for a CRL need wait no more
	}
	onRecord := a.memory.LeadRecorded
	if !leader {
		a.memory = a.memory.Step(protocol.LeadershipLost{})
	}
	a.followLead(leader, onRecord)
	a.before = auditedKeys(snap.LeaderData, nil)
	view := protocol.View{
		Unit: a.unit, Leader: leader, Units: snap.Units, LeaderData: snap.LeaderData, Away: snap.Away, Left: snap.Left,
		Local: local, Want: a.want, Now: a.opts.Now(), Memory: a.memory, Parsed: a.parsed, CASeal: len(a.opts.SealKey) > 0, Audited: a.opts.Audit != nil,
		Policy: a.opts.Policy,
		CA: protocol.CATerms{Signer: a.opts.SignerName, Request: snap.Requests[protocol.RequestRotateCA], Cancel: snap.Requests[protocol.RequestCancelRotation],
			RotateBefore: a.opts.CARotateBefore, TrustTimeout: a.opts.CARotationTrustTimeout, ReissueTimeout: a.opts.CARotationReissueTimeout, Ref: a.opts.CARef,
			RemoteRecheck: a.opts.CARemoteRecheck, ChainCRL: a.chainCRL(leader)},
		CRL: protocol.CRLTerms{RevokeAfter: a.opts.RevokeDepartedAfter},
	}
	d := protocol.Decide(view)
	a.parsed.Forget(view)
	a.wake, a.skewed = d.WakeAt, d.ClockSkew > 0
	noisy := ""
	if leader {
		noisy = noisyWord(snap.Noisy)
	}
	a.report(leader, d, local, noisy, snap.LeaderData)
	rot, _ := protocol.DecodeRotation(rotationRecord(snap.LeaderData, d.Actions))
	a.opts.Metrics.Rotation(a.unit, leader, len(rot.Waiting), len(rot.Untrusted))
	if leader {
		a.opts.Metrics.Oversized(snap.Oversized)
		a.opts.Metrics.Noisy(snap.Noisy)
	}
	if len(d.Actions) == 0 {
		return false, nil
	}
	return true, a.apply(ctx, d.Actions)
}

// rotationRecord is the CA rotation record in leader data once the decision's actions
// are carried out.
func rotationRecord(leaderData map[string]string, actions []protocol.Action) string {
	record := leaderData[protocol.KeyCARotation]
	for _, act := range actions {
		if set, ok := act.(protocol.SetLeaderData); ok {
			if v, ok := set.KV[protocol.KeyCARotation]; ok {
				record = v
			}
		}
	}
	return record
}

// noisyWord is relation.Snapshot.Noisy as the leader publishes it (UnitStatus.Noisy):
// the units, comma-separated. Not their counts, which change with every write: the
// metric has those.
func noisyWord(noisy map[string]int) string {
	return strings.Join(slices.Sorted(maps.Keys(noisy)), ",")
}
