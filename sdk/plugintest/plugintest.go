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

// Result is the outcome of one check: Err is nil when the backend passed it.
type Result struct {
	Check string
	Err   error
}

// check is one part of the contract. It returns every problem it finds, joined.
type check struct {
	name string
	run  func(e *env) error
}

var checks = []check{
	{"Info names the backend and its capabilities", checkInfo},
	{"unclaimed capabilities answer Unimplemented", checkUnclaimed},
	{"CreateCSR honours key, common name and SANs", checkCreateCSR},
	{"CA returns a stable CA certificate", checkCA},
	{"SignCSR gives each profile its usages and chains to CA", checkProfiles},
	{"SignCSR honours validity", checkValidity},
	{"serials are unique", checkSerials},
	{"bad requests are InvalidArgument", checkBadRequests},
	{"hostile CSRs are InvalidArgument (two CNs, email SANs, RSA-1024, bad SANs, PEM headers)", checkHostileCSRs},
	{"the subject is the CN alone; URI SANs are copied", checkSubjectAndURIs},
	{"concurrent SignCSR calls are safe", checkConcurrent},
	{"the CA survives a restart of the plugin", checkRestart},
	{"processes sharing one state directory agree on one CA (as a group on one host does)", checkSharedState},
	{"ExportCA gives the CA and its key; ImportCA makes a CA the signer's, across restarts", checkCAMove},
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
	for _, c := range checks {
		results = append(results, Result{Check: c.name, Err: c.run(e)})
	}
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
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.run(e); err != nil {
				t.Error(err)
			}
		})
	}
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
func (p problems) err() error                       { return errors.Join(p...) }
