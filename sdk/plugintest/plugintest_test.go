package plugintest_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/examples/minimal"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

var fast = plugintest.Options{KeySpecs: []sdk.KeySpec{{Algorithm: "ecdsa", Size: 256}}, Signings: 5, Concurrent: 4}

// A sound backend passes every check.
func TestKitPassesASoundBackend(t *testing.T) {
	plugintest.Run(t, plugintest.InProcess(func() sdk.Backend { return minimal.New() }, nil), fast)
}

// Each broken backend is the sound one with one fault; the kit must name the check it breaks.
func TestKitFailsBrokenBackends(t *testing.T) {
	tests := []struct {
		name      string
		backend   func() sdk.Backend
		wantCheck string
	}{
		{"signs every profile as peer", func() sdk.Backend { return peerOnly{minimal.New()} },
			"SignCSR gives each profile its usages and chains to CA"},
		{"drops the SANs it is asked for", func() sdk.Backend { return noSANs{minimal.New()} },
			"CreateCSR honours key, common name and SANs"},
		{"calls a garbage CSR an internal error", func() sdk.Backend { return internalErrors{minimal.New()} },
			"bad requests are InvalidArgument"},
		{"answers a capability it does not claim", func() sdk.Backend { return silentFetch{minimal.New()} },
			"unclaimed capabilities answer Unimplemented"},
		{"forgets its CA on restart", func() sdk.Backend { return forgetful{minimal.New()} },
			"the CA survives a restart of the plugin"},
		{"makes a CA of its own in each process on one state directory", func() sdk.Backend { return forgetful{minimal.New()} },
			"processes sharing one state directory agree on one CA (as a group on one host does)"},
		{"ignores the requested validity", func() sdk.Backend { return fixedValidity{minimal.New()} },
			"SignCSR honours validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, err := plugintest.Verify(plugintest.InProcess(tt.backend, nil), fast)
			if err != nil {
				t.Fatal(err)
			}
			failed := map[string]error{}
			for _, r := range results {
				if r.Err != nil {
					failed[r.Check] = r.Err
				}
			}
			if failed[tt.wantCheck] == nil {
				t.Fatalf("the kit passed %q; failures: %v", tt.wantCheck, failed)
			}
			t.Logf("kit said: %v", failed[tt.wantCheck])
		})
	}
}

type peerOnly struct{ sdk.Backend }

func (b peerOnly) SignCSR(ctx context.Context, r sdk.SignRequest) (sdk.Certificate, error) {
	if sdk.Profile(r.Profile).Valid() {
		r.Profile = sdk.ProfilePeer
	}
	return b.Backend.SignCSR(ctx, r)
}

type noSANs struct{ sdk.Backend }

func (b noSANs) CreateCSR(ctx context.Context, r sdk.CSRRequest) (sdk.CSR, error) {
	r.SANs = nil
	return b.Backend.CreateCSR(ctx, r)
}

type internalErrors struct{ sdk.Backend }

func (b internalErrors) SignCSR(ctx context.Context, r sdk.SignRequest) (sdk.Certificate, error) {
	c, err := b.Backend.SignCSR(ctx, r)
	if err != nil && strings.Contains(err.Error(), "not PEM") {
		return c, sdk.Errorf(sdk.CodeInternal, r.Unit, "%v", err)
	}
	return c, err
}

type silentFetch struct{ sdk.Backend }

func (silentFetch) FetchSecret(context.Context, string) (sdk.Secret, error) { return sdk.Secret{}, nil }

type forgetful struct{ sdk.Backend }

func (b forgetful) Configure(ctx context.Context, r sdk.ConfigureRequest) error {
	dir, err := os.MkdirTemp(r.StateDir, "forgetful-") // removed with the kit's state dir
	if err != nil {
		return err
	}
	r.StateDir = dir // a fresh directory each start: the CA does not survive
	return b.Backend.Configure(ctx, r)
}

type fixedValidity struct{ sdk.Backend }

func (b fixedValidity) SignCSR(ctx context.Context, r sdk.SignRequest) (sdk.Certificate, error) {
	if r.Validity > 0 {
		r.Validity = 0
	}
	return b.Backend.SignCSR(ctx, r)
}

type noCA struct{ sdk.Backend }

func (noCA) CA(context.Context) (sdk.CA, error) {
	return sdk.CA{}, sdk.Errorf(sdk.CodeFailedPrecondition, "ca", "the CA directory is gone")
}

// One root cause is reported once: a backend whose CA fails fails the CA check, and the
// checks that need a CA are skipped with a pointer to it instead of failing too.
func TestKitReportsOneRootCauseOnce(t *testing.T) {
	results, err := plugintest.Verify(plugintest.InProcess(func() sdk.Backend { return noCA{minimal.New()} }, nil), fast)
	if err != nil {
		t.Fatal(err)
	}
	var failed, skipped []string
	for _, r := range results {
		switch {
		case r.Err != nil:
			failed = append(failed, r.Check)
		case r.Skipped != "":
			skipped = append(skipped, r.Check)
			if !strings.Contains(r.Skipped, "CA returns a stable CA certificate") {
				t.Errorf("%s skipped without naming the failed check: %s", r.Check, r.Skipped)
			}
		}
	}
	if len(failed) != 1 || failed[0] != "CA returns a stable CA certificate" {
		t.Errorf("failed checks %q, want only the CA check", failed)
	}
	if len(skipped) < 5 {
		t.Errorf("skipped %q: the signing checks should be skipped", skipped)
	}
}
