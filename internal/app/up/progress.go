package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// verboseUnits is the group size up to which every state change is printed; larger
// groups get a summary line at most every summaryEvery.
const (
	verboseUnits = 10
	summaryEvery = 500 * time.Millisecond
)

// progress follows the units' states, prints them, and tells when all are done.
type progress struct {
	w     io.Writer
	n     int
	start time.Time

	mu          sync.Mutex
	status      map[string]agent.Status
	failed      map[string]error
	lastSummary time.Time
	done        chan struct{}
	closed      bool
	// fatal carries the first permanent failure of a unit: the group stops on it.
	fatal chan error
}

func newProgress(w io.Writer, n int) *progress {
	return &progress{w: w, n: n, start: time.Now(), status: map[string]agent.Status{},
		failed: map[string]error{}, done: make(chan struct{}), fatal: make(chan error, 1)}
}

func (p *progress) elapsed() time.Duration { return time.Since(p.start).Round(time.Millisecond) }

func (p *progress) printf(format string, args ...any) {
	fmt.Fprintf(p.w, "[%7.2fs] "+format, append([]any{time.Since(p.start).Seconds()}, args...)...)
}

// update records a unit's new status; agents call it.
func (p *progress) update(s agent.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, seen := p.status[s.Unit]
	p.status[s.Unit] = s
	if s.State == protocol.StateRejected {
		// A group that up started cannot converge past a refused CSR: what refused it
		// (the policy, a name another unit holds, the signer) is the config's, and the
		// unit tries again only ten minutes on. Say so now, not at the timeout.
		select {
		case p.fatal <- refused(s):
		default:
		}
	}
	if seen && old.State == s.State && old.Leader == s.Leader && old.Error == s.Error && len(old.Signing) == len(s.Signing) && old.CAState == s.CAState {
		// a serial arriving for the same state: nothing new to print
	} else if p.n <= verboseUnits {
		p.printf("%-12s %s%s\n", s.Unit, s.State, describe(s))
	} else if time.Since(p.lastSummary) >= summaryEvery {
		p.lastSummary = time.Now()
		p.printf("%s\n", p.summaryLocked())
	}
	if !p.closed && p.allDoneLocked() {
		p.closed = true
		close(p.done)
	}
}

func describe(s agent.Status) string {
	var extra []string
	if s.Leader {
		extra = append(extra, "leader")
	}
	if len(s.Signing) > 0 {
		extra = append(extra, fmt.Sprintf("signing %d CSRs", len(s.Signing)))
	}
	if s.State == protocol.StateRejected || s.State == protocol.StateRenewalDue {
		extra = append(extra, s.Detail)
	}
	if s.Leader && s.CAState != "" && s.CAState != protocol.CASteady {
		extra = append(extra, s.CAState)
	}
	if len(extra) == 0 {
		return ""
	}
	return " (" + strings.Join(extra, ", ") + ")"
}

func (p *progress) summaryLocked() string {
	counts := map[protocol.State]int{}
	for _, s := range p.status {
		counts[s.State]++
	}
	parts := []string{fmt.Sprintf("%d/%d units reporting", len(p.status), p.n)}
	for _, st := range []protocol.State{protocol.StateCreateCSR, protocol.StateAwaitingCertificate,
		protocol.StateRejected, protocol.StateCertificateAvailable} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	return strings.Join(parts, ", ")
}

// allDoneLocked: every unit has installed a certificate, the leader signs nothing and
// says the group's CA is its signer's with no rotation under way, and every unit trusts
// the CAs the leader trusts. (Certificates from an earlier run count only once the
// leader has checked them against its signer: a changed signer rotates the group.)
func (p *progress) allDoneLocked() bool {
	if len(p.status) < p.n {
		return false
	}
	var leader *agent.Status
	for _, s := range p.status {
		if s.State != protocol.StateCertificateAvailable || s.Serial == "" || len(s.Signing) > 0 {
			return false
		}
		if s.Leader {
			leader = &s
		}
	}
	if leader == nil || leader.CAState != protocol.CASteady {
		return false
	}
	for _, s := range p.status {
		if s.Trusts != leader.Trusts {
			return false
		}
	}
	return true
}

// refused is the error of a unit whose CSR was refused: the leader's reason names it.
func refused(s agent.Status) error {
	if strings.Contains(s.Detail, s.Unit) {
		return errors.New(s.Detail)
	}
	return fmt.Errorf("%s: its CSR was refused: %s", s.Unit, s.Detail)
}

// fail records an agent that stopped with an error.
func (p *progress) fail(unit string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed[unit] = err
	p.printf("%-12s stopped: %v\n", unit, err)
	if fault.IsPermanent(err) {
		select {
		case p.fatal <- err: // it names the unit
		default: // the first one is enough
		}
	}
}

func (p *progress) waitAll(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case err := <-p.fatal:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pending lists the units that are not done, with what they are doing.
func (p *progress) pending() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lines []string
	for unit, s := range p.status {
		switch {
		case s.Leader && s.Error != "":
			// The leader's last error says why nobody is signed: a signer that does not
			// start, a CA it cannot load.
			lines = append(lines, fmt.Sprintf("  %s (leader): %s (%s); last error: %s", unit, s.State, s.Detail, s.Error))
		case s.State != protocol.StateCertificateAvailable || s.Serial == "":
			line := fmt.Sprintf("  %s: %s (%s)", unit, s.State, s.Detail)
			if s.Error != "" {
				line += "; last error: " + s.Error
			}
			lines = append(lines, line)
		}
	}
	for unit, err := range p.failed {
		lines = append(lines, fmt.Sprintf("  %s: stopped: %v", unit, err))
	}
	sort.Strings(lines)
	if missing := p.n - len(p.status); missing > 0 {
		lines = append(lines, fmt.Sprintf("  %d units never reported", missing))
	}
	return strings.Join(lines, "\n")
}

func (p *progress) get(unit string) agent.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status[unit]
}
