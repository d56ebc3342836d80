// Package plugintest is the conformance kit for tlsrelay backends. A plugin author runs
// it from `go test`, against the backend served in-process and against the built binary
// launched through go-plugin:
//
//	func TestConformance(t *testing.T) {
//		plugintest.Run(t, plugintest.InProcess(func() sdk.Backend { return mybackend.New() }, nil), plugintest.Options{})
//	}
//
// It checks the contract, not an implementation: CSRs that parse and verify and honour
// the requested names and key; signatures that chain to CA() with the profile's usages
// and the requested validity; unique serials; InvalidArgument for bad input;
// Unimplemented for capabilities Info does not claim; safe concurrent signing; and a CA
// that survives a restart of the plugin.
package plugintest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// Options tune the kit; zero values take the defaults.
type Options struct {
	// KeySpecs are the keys CreateCSR must honour. Default: ecdsa 256, ecdsa 384, rsa 2048.
	KeySpecs []sdk.KeySpec
	// Signings is how many certificates the serial-uniqueness check signs. Default 20.
	Signings int
	// Concurrent is how many SignCSR calls run at once in the concurrency check. Default 8.
	Concurrent int
	// Timeout bounds the whole run. Default 5 minutes.
	Timeout time.Duration
	// CallTimeout bounds each call to a backend the kit started (Command, CommandEnv,
	// InProcess): a call still unanswered then fails its check with an error naming the
	// method. Default 20 seconds.
	CallTimeout time.Duration
	// FixedValidity declares a signer that signs for this lifetime only, whatever is
	// asked (a remote CA's sign API may take none): the validity check expects it, and
	// Configure must refuse another group validity with FailedPrecondition. Zero: the
	// signer honours the validity asked.
	FixedValidity time.Duration
}

func (o Options) withDefaults() Options {
	if len(o.KeySpecs) == 0 {
		o.KeySpecs = []sdk.KeySpec{{Algorithm: "ecdsa", Size: 256}, {Algorithm: "ecdsa", Size: 384}, {Algorithm: "rsa", Size: 2048}}
	}
	if o.Signings == 0 {
		o.Signings = 20
	}
	if o.Concurrent == 0 {
		o.Concurrent = 8
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	return o
}

// Result is the outcome of one check: Err is nil when the backend passed it. Skipped
// says why a check did not run: a check it depends on failed, and that failure is the
// one to fix (one root cause is reported once). NotClaimed says why a check was not
// run because the backend does not claim what it checks, and what goes unproved.
type Result struct {
	Check      string
	Err        error
	Skipped    string
	NotClaimed string
	Took       time.Duration
}

// Proved: the check ran and passed.
func (r Result) Proved() bool { return r.Err == nil && r.Skipped == "" && r.NotClaimed == "" }

// check is one part of the contract. It returns every problem it finds, joined. needs
// names the checks whose failure makes this one meaningless; claims says what the
// backend must claim for it to run (nil: always runs).
type check struct {
	name   string
	run    func(e *env) error
	needs  []string
	claims *claim
}

// claim is what a check exercises: all of caps (or, with any, one of them), and what
// stays unproved without them.
type claim struct {
	caps     []sdk.Capability
	any      bool
	unproved string
}

// missing says what the backend does not claim of c, "" when it may run.
func (c *claim) missing(info sdk.Info) string {
	if c == nil {
		return ""
	}
	var lacks []string
	for _, cap := range c.caps {
		if !info.Has(cap) {
			lacks = append(lacks, string(cap))
		} else if c.any {
			return ""
		}
	}
	if len(lacks) == 0 {
		return ""
	}
	join := " and "
	if c.any {
		join = " or "
	}
	return fmt.Sprintf("does not claim %s: %s untested", strings.Join(lacks, join), c.unproved)
}

func needs(unproved string, caps ...sdk.Capability) *claim {
	return &claim{caps: caps, unproved: unproved}
}

var (
	signing   = needs("signing", sdk.CapSignCSR)
	theCA     = needs("its CA", sdk.CapCA)
	csrMaking = needs("key and CSR making", sdk.CapCreateCSR)
	caMoves   = &claim{caps: []sdk.Capability{sdk.CapCAExport, sdk.CapCAImport}, any: true,
		unproved: "moving its CA (failover by ca_seal, rotation by import)"}
)

// checkCAName is the check every signing check depends on: without a CA, nothing
// signed can chain to it.
const checkCAName = "CA returns a stable CA certificate"

var checks = []check{
	{"Info names the backend and its capabilities", checkInfo, nil, nil},
	{"unclaimed capabilities answer Unimplemented", checkUnclaimed, nil, nil},
	{"Configure with the group's validity", checkConfigureValidity, nil, nil},
	{"CreateCSR honours key, common name and SANs", checkCreateCSR, nil, csrMaking},
	{checkCAName, checkCA, nil, theCA},
	{"SignCSR gives each profile its usages and chains to CA", checkProfiles, []string{checkCAName}, signing},
	{"SignCSR honours validity", checkValidity, []string{checkCAName}, signing},
	{"serials are unique", checkSerials, []string{checkCAName}, signing},
	{"bad requests are InvalidArgument", checkBadRequests, nil, signing},
	{"hostile CSRs are InvalidArgument (two CNs, CN characters, email SANs, RSA-1024, bad SANs, PEM framing and headers)", checkHostileCSRs, nil, signing},
	{"the subject is the CN alone; URI SANs are copied", checkSubjectAndURIs, []string{checkCAName}, signing},
	{"a CSR asking to be a CA is signed as a plain leaf", checkExtensionsNotCopied, []string{checkCAName}, signing},
	{"concurrent SignCSR calls are safe", checkConcurrent, []string{checkCAName}, signing},
	{"the CA survives a restart of the plugin", checkRestart, []string{checkCAName}, needs("a CA that survives a restart", sdk.CapCA, sdk.CapSignCSR)},
	{"processes sharing one state directory agree on one CA (as a group on one host does)", checkSharedState, []string{checkCAName}, theCA},
	{"ExportCA gives the CA and its key; ImportCA makes a CA the signer's, across restarts", checkCAMove, []string{checkCAName}, caMoves},
	{"GenerateCA makes the next CA, which signs from then on, across restarts", checkGenerateCA, []string{checkCAName},
		needs("rotation by a CA the signer makes itself", sdk.CapCAGenerate, sdk.CapSignCSR)},
	{"SignCRL lists the serials asked for, signed by the CA", checkCRL, []string{checkCAName}, needs("revocation lists", sdk.CapCRL)},
	{"SignCSRs answers each request in order; a bad one fails alone", checkSignCSRs, []string{checkCAName},
		needs("batched signing (the host signs one CSR a call)", sdk.CapSignCSRs)},
	{"a remote CA that moves is followed (ca_remote)", unexercised("the leader asks CA() again every ca.remote_recheck and " +
		"rotates the group when the service moved to another CA; the kit cannot move a CA at a remote service: prove it " +
		"against the service, as tlsrelay's TestRemoteCustody does with a test signer"), nil, needs("a remote CA", sdk.CapCARemote)},
	{"every host's signer reaches one CA key (ca_shared)", unexercised("a new leader on another host signs with the same CA " +
		"without importing it; the kit runs on one host: prove it with two hosts reaching the key (an HSM, a shared service)"),
		nil, needs("a CA every host reaches", sdk.CapCAShared)},
}

// unexercised is the check of a claim the kit cannot exercise where it runs: the claim
// is reported as not proved, with what would prove it, never as passed.
func unexercised(what string) func(*env) error {
	return func(*env) error { return notRun("claimed, not exercised by the kit: " + what) }
}

// runChecks runs every check in order through each (which may run it inside a subtest,
// so that its time is its own): it skips those whose prerequisites failed or were not
// run, and those the backend does not claim. After a check in which the plugin process
// died, the failure says how (its panic, its last stderr lines) and the next check runs
// on the plugin started again.
func runChecks(e *env, each func(name string, run func() Result)) {
	failed, unclaimed := map[string]bool{}, map[string]bool{}
	for _, c := range checks {
		each(c.name, func() Result {
			r := Result{Check: c.name, NotClaimed: c.claims.missing(e.info)}
			for _, need := range c.needs {
				if r.NotClaimed == "" && unclaimed[need] {
					r.NotClaimed = fmt.Sprintf("it needs %q, which the backend does not claim", need)
				}
				if r.NotClaimed == "" && failed[need] {
					r.Skipped = fmt.Sprintf("skipped: it needs %q, which failed (fix that first)", need)
				}
			}
			if r.Skipped == "" && r.NotClaimed == "" {
				start := time.Now()
				r.Err = c.run(e)
				r.Took = time.Since(start)
				r.Err = e.afterCrash(r.Err)
				if reason, ok := r.Err.(notRun); ok {
					r.Err, r.NotClaimed = nil, string(reason)
				}
			}
			failed[c.name], unclaimed[c.name] = r.Err != nil || r.Skipped != "", r.NotClaimed != ""
			return r
		})
	}
}

// Summary says what a run proved and what it did not: every check that failed, was
// skipped, or was not run because the backend does not claim what it checks.
func Summary(results []Result) string {
	var proved int
	var not []string
	for _, r := range results {
		switch {
		case r.Proved():
			proved++
		case r.Err != nil:
			not = append(not, "FAIL "+r.Check)
		case r.Skipped != "":
			not = append(not, "SKIP "+r.Check+": "+r.Skipped)
		default:
			not = append(not, "SKIP "+r.Check+": "+r.NotClaimed)
		}
	}
	s := fmt.Sprintf("plugintest: %d of %d checks proved", proved, len(results))
	if len(not) > 0 {
		s += "; not proved:\n  " + strings.Join(not, "\n  ")
	}
	return s
}

// env is what every check sees: the running backend and how to restart it.
type env struct {
	ctx      context.Context
	opts     Options
	start    Starter
	stateDir string
	backend  sdk.Backend
	stop     func()
	info     sdk.Info
	launched launched // what the Starter said of the backend it started
}

// afterCrash: if the plugin process died during the check that returned err, err says
// how (its panic, its last stderr lines), and the plugin is started again for the next.
func (e *env) afterCrash(err error) error {
	if e.launched.died == nil {
		return err
	}
	report := e.launched.died(err != nil)
	if report == "" {
		return err
	}
	err = errors.Join(err, fmt.Errorf("the plugin process died: %s", report))
	if rerr := e.restart(); rerr != nil {
		err = errors.Join(err, fmt.Errorf("starting it again: %w", rerr))
	}
	return err
}

func (e *env) claims(c sdk.Capability) bool { return e.info.Has(c) }

// Verify runs every check against the backend start gives and returns their results.
// The error is for a backend that cannot even start.
func Verify(start Starter, opts Options) ([]Result, error) {
	e, cleanup, err := prepare(start, opts)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	results := make([]Result, 0, len(checks))
	runChecks(e, func(_ string, run func() Result) { results = append(results, run()) })
	return results, nil
}

// Run runs every check as a subtest of t, and logs at the end what the run proved and
// what it did not (Summary).
func Run(t *testing.T, start Starter, opts Options) {
	t.Helper()
	e, cleanup, err := prepare(start, opts)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	defer cleanup()
	t.Logf("plugintest: backend %q %s, capabilities %v", e.info.Name, e.info.Version, e.info.Capabilities)
	var results []Result
	runChecks(e, func(name string, run func() Result) {
		t.Run(name, func(t *testing.T) {
			r := run()
			results = append(results, r)
			switch {
			case r.Skipped != "":
				t.Skip(r.Skipped)
			case r.NotClaimed != "":
				t.Skip(r.NotClaimed)
			case r.Err != nil:
				t.Error(r.Err)
			}
		})
	})
	t.Log(Summary(results))
}

func prepare(start Starter, opts Options) (*env, func(), error) {
	opts = opts.withDefaults()
	stateDir, err := os.MkdirTemp("", "plugintest-")
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	e := &env{ctx: ctx, opts: opts, start: start, stateDir: stateDir}
	cleanup := func() {
		if e.stop != nil {
			e.stop()
		}
		cancel()
		os.RemoveAll(stateDir)
	}
	if err := e.restart(); err != nil {
		cleanup()
		return nil, nil, err
	}
	return e, cleanup, nil
}

// restart stops the backend, if running, and starts it again on the same state.
func (e *env) restart() error {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	b, stop, err := e.start(e.stateDir)
	if err != nil {
		return fmt.Errorf("start backend: %w", err)
	}
	e.backend, e.stop, e.launched = b, stop, launchedAs(b)
	e.launched.limit.set(e.opts.CallTimeout)
	info, err := b.Info(e.ctx)
	if err != nil {
		return fmt.Errorf("Info: %w", err)
	}
	e.info = info
	return nil
}

// notRun is what a check returns when it cannot run here, and why; it is reported as
// not proved, never as passed.
type notRun string

func (n notRun) Error() string { return string(n) }

// problems collects a check's failures.
type problems []error

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// err joins the problems, each distinct message once with how often it came up: one
// cause seen by 19 signings is one line, not 19.
func (p problems) err() error {
	var order []string
	count := map[string]int{}
	for _, e := range p {
		msg := e.Error()
		if count[msg] == 0 {
			order = append(order, msg)
		}
		count[msg]++
	}
	var errs []error
	for _, msg := range order {
		if n := count[msg]; n > 1 {
			msg = fmt.Sprintf("%s (%d times)", msg, n)
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}
