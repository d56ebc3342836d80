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
// one to fix (one root cause is reported once).
type Result struct {
	Check   string
	Err     error
	Skipped string
}

// check is one part of the contract. It returns every problem it finds, joined. needs
// names the checks whose failure makes this one meaningless.
type check struct {
	name  string
	run   func(e *env) error
	needs []string
}

// checkCAName is the check every signing check depends on: without a CA, nothing
// signed can chain to it.
const checkCAName = "CA returns a stable CA certificate"

var checks = []check{
	{"Info names the backend and its capabilities", checkInfo, nil},
	{"unclaimed capabilities answer Unimplemented", checkUnclaimed, nil},
	{"CreateCSR honours key, common name and SANs", checkCreateCSR, nil},
	{checkCAName, checkCA, nil},
	{"SignCSR gives each profile its usages and chains to CA", checkProfiles, []string{checkCAName}},
	{"SignCSR honours validity", checkValidity, []string{checkCAName}},
	{"serials are unique", checkSerials, []string{checkCAName}},
	{"bad requests are InvalidArgument", checkBadRequests, nil},
	{"hostile CSRs are InvalidArgument (two CNs, CN characters, email SANs, RSA-1024, bad SANs, PEM framing and headers)", checkHostileCSRs, nil},
	{"the subject is the CN alone; URI SANs are copied", checkSubjectAndURIs, []string{checkCAName}},
	{"a CSR asking to be a CA is signed as a plain leaf", checkExtensionsNotCopied, []string{checkCAName}},
	{"concurrent SignCSR calls are safe", checkConcurrent, []string{checkCAName}},
	{"the CA survives a restart of the plugin", checkRestart, []string{checkCAName}},
	{"processes sharing one state directory agree on one CA (as a group on one host does)", checkSharedState, []string{checkCAName}},
	{"ExportCA gives the CA and its key; ImportCA makes a CA the signer's, across restarts", checkCAMove, []string{checkCAName}},
	{"SignCRL lists the serials asked for, signed by the CA", checkCRL, []string{checkCAName}},
	{"SignCSRs answers each request in order; a bad one fails alone", checkSignCSRs, []string{checkCAName}},
}

// runChecks runs every check in order, skipping those whose prerequisites failed, and
// reports each result.
func runChecks(e *env, report func(Result)) {
	failed := map[string]bool{}
	for _, c := range checks {
		r := Result{Check: c.name}
		for _, need := range c.needs {
			if failed[need] {
				r.Skipped = fmt.Sprintf("skipped: it needs %q, which failed (fix that first)", need)
				break
			}
		}
		if r.Skipped == "" {
			r.Err = c.run(e)
		}
		failed[c.name] = r.Err != nil || r.Skipped != ""
		report(r)
	}
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
	runChecks(e, func(r Result) { results = append(results, r) })
	return results, nil
}

// Run runs every check as a subtest of t.
func Run(t *testing.T, start Starter, opts Options) {
	t.Helper()
	e, cleanup, err := prepare(start, opts)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	defer cleanup()
	t.Logf("plugintest: backend %q %s, capabilities %v", e.info.Name, e.info.Version, e.info.Capabilities)
	runChecks(e, func(r Result) {
		t.Run(r.Check, func(t *testing.T) {
			switch {
			case r.Skipped != "":
				t.Skip(r.Skipped)
			case r.Err != nil:
				t.Error(r.Err)
			}
		})
	})
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
	e.backend, e.stop = b, stop
	info, err := b.Info(e.ctx)
	if err != nil {
		return fmt.Errorf("Info: %w", err)
	}
	e.info = info
	return nil
}

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
