package sim

import (
	"flag"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	seedFlag      = flag.Uint64("sim.seed", 0, "replay this one schedule (and shrink it if it fails)")
	schedulesFlag = flag.Int("sim.schedules", 300, "how many schedules to run, from -sim.first on")
	firstFlag     = flag.Uint64("sim.first", 1, "the seed of the first schedule")
	stepsFlag     = flag.Int("sim.steps", 250, "events in each schedule, before the group heals")
	traceFlag     = flag.Bool("sim.trace", false, "with -sim.seed: print every event and decision")
	ignoreFlag    = flag.String("sim.ignore", "", "invariants not to check, comma-separated (to find what a known violation hides)")
)

func options(t *testing.T) Options {
	var o Options
	for _, f := range strings.FieldsFunc(*ignoreFlag, func(r rune) bool { return r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > invariantLast {
			t.Fatalf("-sim.ignore: %q is not an invariant (1 to %d)", f, invariantLast)
		}
		o.Ignore = append(o.Ignore, n)
	}
	return o
}

// TestSimulate plays seeded random schedules of the whole group through the real
// protocol and checks the group's invariants after every event. A failing seed is
// shrunk to a short schedule and printed; -sim.seed replays it.
func TestSimulate(t *testing.T) {
	opts := options(t)
	if *seedFlag != 0 {
		report(t, RunSeed(*seedFlag, *stepsFlag, opts), opts)
		return
	}
	var (
		next   atomic.Uint64
		mu     sync.Mutex
		first  *Result
		wg     sync.WaitGroup
		totals Result
	)
	next.Store(*firstFlag)
	last := *firstFlag + uint64(*schedulesFlag)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				r := RunSeed(seed, *stepsFlag, opts)
				mu.Lock()
				totals.Signed += r.Signed
				totals.Published += r.Published
				if r.Violation != nil && (first == nil || seed < first.Seed) {
					first = &r
				}
				mu.Unlock()
				if first != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d schedules of %d events from seed %d: %d certificates signed, %d published", *schedulesFlag, *stepsFlag, *firstFlag, totals.Signed, totals.Published)
	if first != nil {
		report(t, *first, opts)
	}
}

// report fails t with r's violation and its schedule, shrunk.
func report(t *testing.T, r Result, opts Options) {
	t.Helper()
	if r.Violation == nil {
		t.Logf("seed %d (%s): every invariant held; %d certificates signed, %d published", r.Seed, r.Params, r.Signed, r.Published)
		return
	}
	evs := Generate(r.Seed, r.Params, *stepsFlag)
	short := Shrink(r.Seed, r.Params, evs, r.Violation.Invariant, 400, opts)
	if *traceFlag {
		opts.Trace = os.Stdout
	}
	again := Run(r.Seed, r.Params, short, opts)
	t.Fatalf("seed %d (%s) fails: %v\nafter event %d of %d; replay with: go test ./internal/sim -run TestSimulate -sim.seed %d\n"+
		"shrunk to %d events (then the group heals), which fail with: %v\n%s",
		r.Seed, r.Params, r.Violation, r.At, r.Events, r.Seed, len(short), again.Violation, Format(short))
}

// hexRun is a fingerprint or key in a trace: random per run, as keys are.
var hexRun = regexp.MustCompile(`[0-9a-f]{12,}`)

// A schedule replays: the same seed gives the same events, decisions and outcome (but
// for key material, which is random: fingerprints are masked).
func TestReplaysAreDeterministic(t *testing.T) {
	for _, seed := range []uint64{3, 59, 137, 432, 708} {
		var runs [2]string
		var results [2]Result
		for i := range runs {
			var b strings.Builder
			results[i] = RunSeed(seed, *stepsFlag, Options{Trace: &b})
			runs[i] = hexRun.ReplaceAllString(b.String(), "#")
		}
		if runs[0] != runs[1] {
			a, b := strings.Split(runs[0], "\n"), strings.Split(runs[1], "\n")
			for i := range min(len(a), len(b)) {
				if a[i] != b[i] {
					t.Fatalf("seed %d diverges at line %d:\n%s\n%s", seed, i, a[i], b[i])
				}
			}
			t.Fatalf("seed %d: traces of %d and %d lines", seed, len(a), len(b))
		}
		if results[0].Signed != results[1].Signed || results[0].Published != results[1].Published || (results[0].Violation == nil) != (results[1].Violation == nil) {
			t.Fatalf("seed %d: results %+v and %+v", seed, results[0], results[1])
		}
	}
}

// The checks can fail: with the leader's check of its signer's answers off (as leaders
// were), a sloppy signer's certificate is published, and the simulator says so.
func TestSimulatorCatchesAnUncheckedSigner(t *testing.T) {
	for seed := uint64(1); seed < 2000; seed++ {
		p := paramsFor(seed)
		if p.FaultRate == 0 {
			continue
		}
		r := Run(seed, p, Generate(seed, p, *stepsFlag), Options{Unchecked: true})
		if r.Violation != nil && (r.Violation.Invariant == OneLineage || r.Violation.Invariant == OneHolder) {
			t.Logf("seed %d: %v", seed, r.Violation)
			return
		}
	}
	t.Fatal("no schedule with a sloppy signer broke an invariant while the leader published its answers unchecked")
}
