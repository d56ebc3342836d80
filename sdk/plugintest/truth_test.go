package plugintest_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/examples/minimal"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// The test binary serves a plugin when PLUGINTEST_SERVE names one, so that the kit can
// launch it as a real child process.
func TestMain(m *testing.M) {
	switch os.Getenv("PLUGINTEST_SERVE") {
	case "":
		os.Exit(m.Run())
	case "panics":
		sdk.Serve(panicky{minimal.New()})
	case "secret-version":
		sdk.Serve(secretVersion{minimal.New()})
	case "needs-secret":
		if os.Getenv("PLUGINTEST_SECRET") == "" {
			os.Stderr.WriteString("PLUGINTEST_SECRET is not set: cannot reach the token\n")
			os.Exit(1)
		}
		sdk.Serve(minimal.New())
	}
	os.Exit(0)
}

type panicky struct{ sdk.Backend }

func (panicky) CreateCSR(context.Context, sdk.CSRRequest) (sdk.CSR, error) {
	panic("plugintest boom")
}

// secretVersion reports PLUGINTEST_SECRET as its version: empty unless it reaches it.
type secretVersion struct{ sdk.Backend }

func (b secretVersion) Info(ctx context.Context) (sdk.Info, error) {
	info, err := b.Backend.Info(ctx)
	info.Version = os.Getenv("PLUGINTEST_SECRET")
	return info, err
}

func results(t *testing.T, start plugintest.Starter, opts plugintest.Options) map[string]plugintest.Result {
	t.Helper()
	rs, err := plugintest.Verify(start, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]plugintest.Result{}
	for _, r := range rs {
		out[r.Check] = r
	}
	return out
}

const (
	checkCreateCSR = "CreateCSR honours key, common name and SANs"
	checkCA        = "CA returns a stable CA certificate"
	checkInfo      = "Info names the backend and its capabilities"
	checkCRL       = "SignCRL lists the serials asked for, signed by the CA"
	checkMove      = "ExportCA gives the CA and its key; ImportCA makes a CA the signer's, across restarts"
	checkSerials   = "serials are unique"
	checkSign      = "SignCSR gives each profile its usages and chains to CA"
	checkConfigure = "Configure with the group's validity"
)

// What a backend does not claim is never reported as proved: each such check says what
// went untested, and the summary lists it.
func TestKitSaysWhatItDidNotProve(t *testing.T) {
	rs, err := plugintest.Verify(plugintest.InProcess(func() sdk.Backend { return minimal.New() }, nil), fast)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]plugintest.Result{}
	for _, r := range rs {
		byName[r.Check] = r
	}
	for check, want := range map[string]string{checkCRL: "does not claim crl", checkMove: "failover by ca_seal"} {
		if r := byName[check]; r.Proved() || !strings.Contains(r.NotClaimed, want) {
			t.Errorf("%s: proved %t, not claimed %q; want not proved, saying %q", check, r.Proved(), r.NotClaimed, want)
		}
	}
	summary := plugintest.Summary(rs)
	if !strings.Contains(summary, "not proved") || !strings.Contains(summary, checkCRL) || strings.Contains(summary, checkCA+":") {
		t.Errorf("summary:\n%s", summary)
	}
	if r := byName[checkSerials]; r.Took <= 0 {
		t.Errorf("%s took %s: checks report their own time", checkSerials, r.Took)
	}
}

// A plugin binary that panics: the check it panicked in says so, with the panic, and
// the checks after it run on the plugin started again (not "connection refused").
func TestKitShowsAPanicOnce(t *testing.T) {
	t.Setenv("PLUGINTEST_SERVE", "panics")
	rs := results(t, plugintest.CommandEnv([]string{"PLUGINTEST_SERVE"}, nil, os.Args[0]), fast)
	err := rs[checkCreateCSR].Err
	if err == nil || !strings.Contains(err.Error(), "the plugin process died") || !strings.Contains(err.Error(), "panic: plugintest boom") {
		t.Fatalf("%s: %v; want the plugin's death with its panic", checkCreateCSR, err)
	}
	if r := rs[checkCA]; !r.Proved() || !rs[checkSerials].Proved() {
		t.Fatalf("after the panic: %s %+v, %s %+v; want both proved on the plugin started again", checkCA, r, checkSerials, rs[checkSerials])
	}
}

// A binary gets the host's environment: the base and what it declares, nothing else.
func TestKitLaunchesWithTheHostsEnvironment(t *testing.T) {
	t.Setenv("PLUGINTEST_SERVE", "secret-version")
	t.Setenv("PLUGINTEST_SECRET", "1.0-declared")
	undeclared := results(t, plugintest.CommandEnv([]string{"PLUGINTEST_SERVE"}, nil, os.Args[0]), fast)
	if r := undeclared[checkInfo]; r.Err == nil || !strings.Contains(r.Err.Error(), "empty version") {
		t.Errorf("an undeclared variable reached the plugin: %s: %v", checkInfo, r.Err)
	}
	declared := results(t, plugintest.CommandEnv([]string{"PLUGINTEST_SERVE", "PLUGINTEST_SECRET"}, nil, os.Args[0]), fast)
	if r := declared[checkInfo]; !r.Proved() {
		t.Errorf("a declared variable did not reach the plugin: %s: %v", checkInfo, r.Err)
	}
}

// A binary that fails at start for want of a variable the test has and the host does
// not pass: the error lists the environment it ran with and says how to declare more.
func TestKitSaysWhichEnvironmentAFailedStartHad(t *testing.T) {
	t.Setenv("PLUGINTEST_SERVE", "needs-secret")
	t.Setenv("PLUGINTEST_SECRET", "in the test only")
	_, err := plugintest.Verify(plugintest.CommandEnv([]string{"PLUGINTEST_SERVE"}, nil, os.Args[0]), fast)
	for _, want := range []string{"PLUGINTEST_SECRET is not set", "ran with the host's environment: PATH, HOME, LANG, LC_ALL, TZ, TMPDIR, PLUGINTEST_SERVE and nothing else", "plugintest.CommandEnv"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("a plugin that exits at start: %v; want %q", err, want)
		}
	}
}

// closing counts Close calls.
type closing struct {
	sdk.Backend
	closed *atomic.Int32
}

func (c closing) Close() error { c.closed.Add(1); return nil }

// An in-process backend is closed each time the kit stops it, before the kit goes on.
func TestKitClosesInProcessBackends(t *testing.T) {
	var made, closed atomic.Int32
	results(t, plugintest.InProcess(func() sdk.Backend { made.Add(1); return closing{minimal.New(), &closed} }, nil), fast)
	if made.Load() < 2 || closed.Load() != made.Load() {
		t.Fatalf("%d backends made, %d closed; want every one closed", made.Load(), closed.Load())
	}
}

// fixedLife signs for one lifetime whatever is asked, and refuses another group
// validity at Configure, as a remote CA with a fixed profile would.
type fixedLife struct {
	sdk.Backend
	life time.Duration
}

func (b fixedLife) Configure(ctx context.Context, r sdk.ConfigureRequest) error {
	if r.Validity != 0 && r.Validity != b.life {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "validity", "this CA signs for %s only, not %s", b.life, r.Validity)
	}
	return b.Backend.Configure(ctx, r)
}

func (b fixedLife) SignCSR(ctx context.Context, r sdk.SignRequest) (sdk.Certificate, error) {
	r.Validity = b.life
	return b.Backend.SignCSR(ctx, r)
}

// A signer with a fixed lifetime passes when it declares it (Options.FixedValidity) and
// refuses another at Configure; one that accepts any group validity at Configure but
// signs for one lifetime fails the Configure check.
func TestKitFixedValidity(t *testing.T) {
	const life = 72 * time.Hour
	opts := fast
	opts.FixedValidity = life
	ok := results(t, plugintest.InProcess(func() sdk.Backend { return fixedLife{minimal.New(), life} }, nil), opts)
	for _, check := range []string{"SignCSR honours validity", checkConfigure} {
		if r := ok[check]; !r.Proved() {
			t.Errorf("%s: %+v; want proved for a declared fixed lifetime", check, r)
		}
	}
	lax := results(t, plugintest.InProcess(func() sdk.Backend { return fixedValidity{minimal.New()} }, nil), opts)
	if r := lax[checkConfigure]; r.Err == nil || !strings.Contains(r.Err.Error(), "not FailedPrecondition") {
		t.Errorf("%s for a signer that accepts any validity at Configure: %v", checkConfigure, r.Err)
	}
	undeclared := results(t, plugintest.InProcess(func() sdk.Backend { return fixedLife{minimal.New(), life} }, nil), fast)
	if r := undeclared["SignCSR honours validity"]; r.Err == nil {
		t.Error("an undeclared fixed lifetime passed the validity check")
	}
}

// hangs never answers SignCSR (until the caller gives up): a signer stuck on its CA.
type hangs struct{ sdk.Backend }

func (hangs) SignCSR(ctx context.Context, _ sdk.SignRequest) (sdk.Certificate, error) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	return sdk.Certificate{}, ctx.Err()
}

// A SignCSR that hangs fails its check within the per-call deadline, with an error that
// names SignCSR and the deadline, not at the run's end.
func TestAHangingCallFailsWithinItsDeadline(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rs := results(t, plugintest.InProcess(func() sdk.Backend { return hangs{minimal.New()} }, nil),
		plugintest.Options{CallTimeout: time.Second, Signings: 2, Concurrent: 2})
	r := rs[checkSign]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "SignCSR did not answer within 1s") {
		t.Fatalf("%s: %v; want a failure naming SignCSR and its 1s deadline", checkSign, r.Err)
	}
	t.Logf("the run ended %s after it began: %v", time.Since(start).Round(100*time.Millisecond), r.Err)
}
