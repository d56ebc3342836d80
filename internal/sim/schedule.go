package sim

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// kind is what an event does.
type kind uint8

const (
	evStep    kind = iota // a unit's agent takes a turn, reading the relation lag revisions behind at most
	evDeliver             // a unit's writes in flight land (or, with fail, are lost)
	evAdvance             // the clock moves
	evLapse               // a unit's lease lapses (its process does not know yet)
	evPause               // a unit stops doing anything (SIGSTOP, a partition)
	evResume
	evCrash  // kill -9: the process dies, its lease lapses; lost: the host is gone for good
	evStart  // a unit's agent starts (again)
	evStop   // SIGTERM: the unit leaves, saying it will be back
	evLeave  // tlsrelay agent --leave: the unit leaves for good
	evRevoke // tlsrelay revoke: an operator retires a unit that is away
	evElect  // a joined, running, eligible unit wins the campaign if nobody leads
	evRotate // tlsrelay ca rotate
	evCancel // tlsrelay ca rotate --cancel
	evMove   // the remote CA's service moves to another CA
	evFloat  // a unit starts or stops asking for a floating name
	kindCount
)

var kindNames = [...]string{"step", "deliver", "advance", "lapse", "pause", "resume", "crash", "start", "stop", "leave", "revoke",
	"elect", "rotate", "cancel", "move-remote-ca", "float"}

// event is one step of a schedule. It carries its own randomness (n), so that a
// schedule with events taken out still replays the rest the same way.
type event struct {
	kind kind
	unit int
	n    uint64
}

func (e event) String() string {
	s := kindNames[e.kind]
	switch e.kind {
	case evStep:
		return fmt.Sprintf("%s u%d lag=%d", s, e.unit, e.lag())
	case evDeliver:
		if e.n%10 == 0 {
			return fmt.Sprintf("%s u%d (lost)", s, e.unit)
		}
		return fmt.Sprintf("%s u%d", s, e.unit)
	case evAdvance:
		return fmt.Sprintf("%s %s", s, e.duration())
	case evCrash:
		if e.lost() {
			return fmt.Sprintf("%s u%d (host lost)", s, e.unit)
		}
		return fmt.Sprintf("%s u%d", s, e.unit)
	case evElect, evRotate, evCancel, evMove:
		return s
	case evFloat:
		return fmt.Sprintf("%s u%d %s", s, e.unit, floatingNames[e.n%uint64(len(floatingNames))])
	}
	return fmt.Sprintf("%s u%d", s, e.unit)
}

func (e event) lag() int { return int(e.n % 4) }

func (e event) lost() bool { return e.n%5 == 0 }

// duration is how far an advance moves the clock: mostly seconds, sometimes minutes or
// hours, rarely days.
func (e event) duration() time.Duration {
	x := e.n >> 8
	switch e.n % 50 {
	case 0:
		return time.Duration(1+x%4) * 24 * time.Hour
	case 1, 2, 3, 4:
		return time.Duration(1+x%6) * time.Hour
	case 5, 6, 7, 8, 9, 10, 11, 12, 13, 14:
		return time.Duration(1+x%20) * time.Minute
	}
	return time.Duration(1+x%60) * time.Second
}

// weights are how often each kind of event is drawn, in a thousand.
var weights = [kindCount]int{evStep: 470, evDeliver: 230, evAdvance: 110, evLapse: 25, evPause: 15, evResume: 25, evCrash: 15,
	evStart: 30, evStop: 8, evLeave: 4, evRevoke: 4, evElect: 35, evRotate: 8, evCancel: 4, evMove: 4, evFloat: 13}

// Generate draws a schedule of steps events for p from seed: every unit starts, then
// events at random.
func Generate(seed uint64, p Params, steps int) []event {
	r := newRand(seed)
	var evs []event
	for i := range p.Units {
		evs = append(evs, event{kind: evStart, unit: i})
	}
	evs = append(evs, event{kind: evElect})
	total := 0
	for _, w := range weights {
		total += w
	}
	for len(evs) < steps {
		x := r.intn(total)
		k := kind(0)
		for ; x >= weights[k]; k++ {
			x -= weights[k]
		}
		evs = append(evs, event{kind: k, unit: r.intn(p.Units), n: r.next()})
	}
	return evs
}

// apply carries out one event.
func (w *world) apply(e event) {
	u := w.units[e.unit%len(w.units)]
	switch e.kind {
	case evStep:
		u.step(e.lag(), e.n>>8)
	case evDeliver:
		u.deliver(e.n%10 == 0)
	case evAdvance:
		w.now = w.now.Add(e.duration())
	case evLapse:
		w.depart(u, "")
	case evPause:
		if u.proc == running {
			u.proc = paused
		}
	case evResume:
		if u.proc == paused {
			u.proc = running
		}
	case evCrash:
		if u.proc == running || u.proc == paused {
			u.proc = stopped
			if e.lost() {
				u.proc = gone
			}
			w.depart(u, "")
		}
	case evStart:
		if u.proc == notStarted || u.proc == stopped {
			u.start()
		}
	case evStop:
		if u.proc == running {
			w.depart(u, protocol.NoteBack)
			u.proc = stopped
		}
	case evLeave:
		if u.proc == running {
			w.depart(u, protocol.NoteGone)
			u.proc = gone
		}
	case evRevoke:
		if u.proc != running && u.proc != paused && w.store.setAway(u.name, protocol.NoteGone) {
			u.proc = gone
		}
	case evElect:
		w.elect(e.n)
	case evRotate:
		w.requests++
		w.store.request(protocol.RequestRotateCA, fmt.Sprintf("rotate-%d", w.requests))
	case evCancel:
		w.requests++
		w.store.request(protocol.RequestCancelRotation, fmt.Sprintf("cancel-%d", w.requests))
	case evMove:
		if w.p.Custody == Remote && w.shared.current != nil {
			w.shared.current = w.newCA()
		}
	case evFloat:
		f := floatingNames[e.n%uint64(len(floatingNames))]
		u.floats[f] = !u.floats[f]
	}
	w.check()
}

// depart ends u's membership (note "" for a lapse) and remembers when.
func (w *world) depart(u *unit, note string) {
	if _, joined := w.store.head().leases[u.name]; !joined {
		return
	}
	if w.store.head().leader == u.name { // its leader writes in flight are fenced off now
		for i, o := range u.inflight {
			if o.leader && !o.doomed {
				w.lost(u, o, "fenced")
				u.inflight[i].doomed = true
			}
		}
	}
	w.store.depart(u.name, note)
	w.departedAt[u.name] = w.now
}

// elect has a joined, running, eligible unit win the campaign if nobody leads; it
// says whether one did.
func (w *world) elect(n uint64) bool {
	var candidates []*unit
	for _, u := range w.units {
		if u.eligible && u.proc == running && u.joined() {
			candidates = append(candidates, u)
		}
	}
	return len(candidates) > 0 && w.store.elect(candidates[n%uint64(len(candidates))].name)
}

// heal ends the faults and lets the group settle: paused units resume, stopped ones
// start (a lost host stays lost), writes land, a leader is elected, and every unit
// acts until none has anything to do; then the clock moves to the next time a unit
// would wake, until every deadline has passed.
func (w *world) heal() {
	w.healing = true
	for _, u := range w.units {
		if u.proc == paused {
			u.proc = running
		}
		if u.proc == stopped || u.proc == notStarted {
			u.start()
		}
	}
	// Every deadline runs from when a leader lives again: the longest, a rotation's,
	// plus a refused CSR's retry and a departure's delay.
	var horizon time.Time
	w.tracef("heal")
	for round, still := 0, 0; ; round, still = round+1, still+1 {
		if still > 100 { // rounds without the clock moving: something acts for ever
			w.fail(Settles, "the healed group still acts after %d rounds at %s", still, w.now.Format(time.RFC3339))
			return
		}
		acted := false
		for _, u := range w.units {
			u.deliver(false)
		}
		for _, u := range w.units {
			if u.step(0, uint64(round)) {
				acted = true
			}
			u.deliver(false)
			w.check()
			if w.violation != nil {
				return
			}
		}
		if w.elect(uint64(round)) {
			acted = true
		}
		if h := w.store.head(); horizon.IsZero() && h.leader != "" {
			horizon = w.now.Add(w.rotationBound() + protocol.RejectionRetry + w.p.RevokeAfter + time.Hour)
		}
		if acted {
			continue
		}
		if horizon.IsZero() { // nobody can lead: every leader-eligible unit is gone
			break
		}
		if !w.now.Before(horizon) {
			break
		}
		next := horizon
		for _, u := range w.units {
			if at := u.lastDecision.WakeAt; u.proc == running && !at.IsZero() && at.After(w.now) && at.Before(next) {
				next = at
			}
		}
		w.now, still = next.Add(time.Second), 0
	}
	w.checkHealed()
}

// Result is a schedule's outcome.
type Result struct {
	Seed      uint64
	Params    Params
	Events    int
	Violation *Violation
	// At is the index of the event after which the violation was found; -1 when found
	// after the schedule, once the group healed.
	At int
	// Signed, Published and Installed count certificates.
	Signed, Published, Installed int
}

// Options change how schedules are judged.
type Options struct {
	// Ignore lists invariants not to check, to find what a known violation hides.
	Ignore []int
	// Trace, if set, is told every event and decision.
	Trace io.Writer
	// Unchecked publishes what the signer returns without protocol.IssueCheck, as
	// leaders did before it: the simulator's own test that invariant 4 can fail.
	Unchecked bool
}

// Run plays the schedule evs with p from seed, then heals the group, and returns the
// first invariant that did not hold, if any.
func Run(seed uint64, p Params, evs []event, opts Options) Result {
	w := newWorld(seed, p)
	w.ignore, w.trace, w.unchecked = opts.Ignore, opts.Trace, opts.Unchecked
	res := Result{Seed: seed, Params: p, Events: len(evs), At: -1}
	for i, e := range evs {
		w.tracef("%4d %s", i, e)
		w.apply(e)
		if w.violation != nil {
			res.Violation, res.At = w.violation, i
			return w.count(res)
		}
	}
	w.heal()
	res.Violation = w.violation
	return w.count(res)
}

func (w *world) count(res Result) Result {
	for _, rec := range w.certs {
		res.Signed++
		if rec.published {
			res.Published++
		}
	}
	return res
}

// RunSeed draws the schedule of seed and plays it.
func RunSeed(seed uint64, steps int, opts Options) Result {
	p := paramsFor(seed)
	return Run(seed, p, Generate(seed, p, steps), opts)
}

// Shrink takes events out of a failing schedule while it still fails the same
// invariant, and returns the shortest it found (ddmin over chunks, then events).
func Shrink(seed uint64, p Params, evs []event, invariant int, budget int, opts Options) []event {
	fails := func(candidate []event) bool {
		budget--
		r := Run(seed, p, candidate, opts)
		return r.Violation != nil && r.Violation.Invariant == invariant
	}
	for chunk := len(evs) / 2; chunk >= 1 && budget > 0; chunk /= 2 {
		for i := 0; i+chunk <= len(evs) && budget > 0; {
			candidate := append(append([]event{}, evs[:i]...), evs[i+chunk:]...)
			if fails(candidate) {
				evs = candidate
			} else {
				i += chunk
			}
		}
	}
	return evs
}

// Format writes a schedule one event a line.
func Format(evs []event) string {
	var b strings.Builder
	for i, e := range evs {
		fmt.Fprintf(&b, "%4d  %s\n", i, e)
	}
	return b.String()
}

// rnd is a small deterministic generator (SplitMix64).
type rnd struct{ s uint64 }

func newRand(seed uint64) *rnd { return &rnd{s: seed} }

func (r *rnd) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return splitmix(r.s)
}

func (r *rnd) intn(n int) int { return int(r.next() % uint64(n)) }
