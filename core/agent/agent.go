// Package agent runs one unit: it gathers the unit's view of the group (relation
// snapshot, own files), asks the protocol what to do, and does it through the backends,
// the relation and the unit's files; then it waits for the next change.
package agent

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/secrets"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// Backends gives the agent the backend for a role. core/backend.Host implements it
// with plugin processes; tests may serve backends in-process.
type Backends interface {
	For(ctx context.Context, role config.Role) (sdk.Backend, error)
}

// Options configure an Agent.
type Options struct {
	Member      relation.Member
	Backends    Backends
	Certificate config.Certificate
	// Dir is the unit's output directory (tls.key, tls.crt, ca.crt).
	Dir  string
	Host config.Host
	Log  hclog.Logger
	// OnStatus is called whenever the unit's status changes (progress reporting).
	OnStatus func(Status)
	// Secrets are fetched through the secrets backend now and every SecretsRefresh;
	// OnSecret, if set, sees each fetch.
	Secrets        []config.Secret
	SecretsRefresh time.Duration
	OnSecret       func(secrets.Result, error)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Relation names the relation (the sealed CA is bound to it); SealKey is the ca_seal
	// key, nil when none is configured.
	Relation string
	SealKey  []byte
	// CARef names the group's CA in the secrets backend (ca.ref): a leader imports it
	// into its signer before it signs. Empty: the signer's own CA.
	CARef string
	// CAChainCRLFile holds the CRLs of the CAs above the group's (ca.chain_crl_file),
	// which a leader publishes; "" none.
	CAChainCRLFile string
	// SignerName names the signer backend (roles.signer): the group records it, and a
	// leader with another signer rotates the group to its CA.
	SignerName string
	// CARotateBefore: a leader rotates the group's CA when less than this is left of it
	// (ca.rotate_before); 0 never.
	CARotateBefore time.Duration
	// CARotationTrustTimeout bounds a rotation's trust phase (ca.rotation_trust_timeout),
	// CARotationReissueTimeout its reissue phase (ca.rotation_reissue_timeout).
	CARotationTrustTimeout, CARotationReissueTimeout time.Duration
	// CARemoteRecheck is how often a remote CA is loaded again (ca.remote_recheck).
	CARemoteRecheck time.Duration
	// RevokeDepartedAfter: a departed unit's certificate enters the CRL once it has been
	// gone this long (ca.revoke_departed_after).
	RevokeDepartedAfter time.Duration
	// Policy is what this unit signs while it leads; nil is policy.Defaults() with the
	// certificate's common name template.
	Policy *policy.Policy
	// Once: return as soon as the unit holds a current certificate with nothing left
	// to do (cron, init containers), instead of running until ctx ends.
	Once bool
	// Metrics, if set, counts what the unit does (core/metrics).
	Metrics *metrics.Metrics
	// Audit, if set, records what the unit does while it leads (core/audit), before it
	// publishes it.
	Audit *audit.Log
	// Sync makes each file the unit writes durable before it takes its name; nil is an
	// fsync each. The units of one process share a durable.SyncGroup's.
	Sync func(*os.File) error
	// StepTimeout bounds one decision's work, every backend call in it included: a
	// plugin stuck in a call is killed at this deadline and started afresh. Default
	// DefaultStepTimeout.
	StepTimeout time.Duration
}

// DefaultStepTimeout is the default Options.StepTimeout: far above any sane signing
// (milliseconds) or Barbican round trip, far below "hung".
const DefaultStepTimeout = 2 * time.Minute

// Agent is one unit.
type Agent struct {
	opts  Options
	unit  string
	files files
	want  protocol.Want
	log   hclog.Logger

	// memory is what this unit has learned while it leads (protocol.LeaderMemory): the
	// protocol's to read and, through Step, to change.
	memory    protocol.LeaderMemory
	parsed    *protocol.Parsed // the relation values decisions read, parsed (protocol.Parsed)
	wake      time.Time        // when the last decision changes with time alone (protocol.Decision.WakeAt)
	skewed    bool             // the last decision waits out a clock skew
	reported  reported         // what the unit last said of itself (status.go)
	onChange  *onChange
	noCRL     atomic.Bool       // the leader at the last step said its signer signs no CRL (on_change needs none)
	chainCRLs chainCRLFile      // ca.chain_crl_file as last read
	leading   bool              // this unit led at the last step (the audit trail's leadership events)
	before    map[string]string // the leader data the current step's writes change
	auditCA   struct{ pem, sha256 string }
	poke      chan struct{} // on_change finished: look at the status again
}

// New prepares an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	unit := opts.Member.Unit()
	cn, err := opts.Certificate.CommonNameFor(unit)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.SecretsRefresh <= 0 {
		opts.SecretsRefresh = time.Hour
	}
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	if opts.Policy == nil {
		rules := policy.Defaults()
		rules.CommonName = opts.Certificate.CommonName
		if opts.Policy, err = policy.New(rules); err != nil {
			return nil, err
		}
	}
	uid, gid, err := opts.Certificate.Output.IDs()
	if err != nil {
		return nil, err
	}
	sans, err := opts.Certificate.SANsFor(unit, opts.Host)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("%s: %w", unit, err))
	}
	writer := atomicfile.Writer{Owner: &atomicfile.Owner{UID: uid, GID: gid}, Sync: opts.Sync}
	a := &Agent{
		opts:   opts,
		unit:   unit,
		parsed: protocol.NewParsed(),
		files:  files{dir: opts.Dir, mode: opts.Certificate.Output.FileMode(), writer: writer, parsed: &parsedFiles{}},
		log:    opts.Log.With("unit", unit),
		want: protocol.Want{
			CommonName:   cn,
			SANs:         sans,
			Profile:      opts.Certificate.Profile,
			RenewAt:      opts.Certificate.RenewAt,
			RenewJitter:  opts.Certificate.RenewJitter,
			Validity:     opts.Certificate.Validity,
			KeyAlgorithm: opts.Certificate.Key.Algorithm,
			KeySize:      opts.Certificate.Key.Size,
		},
		poke: make(chan struct{}, 1),
	}
	if c := opts.Certificate; c.OnChange != "" {
		a.onChange = &onChange{command: c.OnChange, timeout: max(c.OnChangeTimeout, time.Second), log: a.log,
			env:  []string{"TLSRELAY_UNIT=" + unit, "TLSRELAY_OUTPUT_DIR=" + opts.Dir},
			poke: func() { a.pokeStatus() }, metrics: opts.Metrics, complete: a.files.complete(c.Output, a.noCRL.Load)}
	}
	return a, nil
}

// pokeStatus makes the protocol loop look again (to report on_change's outcome).
func (a *Agent) pokeStatus() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// Run drives the unit until ctx ends; it returns nil then, or the error that stopped it
// (the unit left the relation, or the relation closed). Configured secrets are fetched
// alongside, on their own schedule.
func (a *Agent) Run(ctx context.Context) error {
	// One writer per output directory: a second agent (or `up`) on it would race on
	// the key and certificate files.
	if err := safedir.Ensure(a.opts.Dir, 0o755); err != nil {
		return fault.Permanent(fmt.Errorf("%s: output directory: %w", a.unit, err))
	}
	unlock, err := safedir.Lock(a.opts.Dir)
	if err != nil {
		return fault.Permanent(fmt.Errorf("%s: output directory: %w", a.unit, err))
	}
	defer unlock()
	defer a.onChange.close()
	defer func() { // a unit that stops leading by stopping lets its signer idle too
		if a.leading {
			a.keepSignerWarm(false)
		}
	}()
	if a.files.derivedStale(a.opts.Certificate.Output) { // a format added, or a crash between writes
		if err := a.derive(); err != nil {
			a.log.Warn("writing the output formats", "error", err)
		}
	}
	if a.opts.Once && len(a.opts.Secrets) > 0 {
		// --once ends when the unit holds its certificate and every secret is written.
		if err := a.runProtocol(ctx); err != nil {
			return err
		}
		if err := a.refresher().Once(ctx); err != nil {
			return fmt.Errorf("%s: %w", a.unit, err)
		}
		return nil
	}
	if len(a.opts.Secrets) > 0 {
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.refresher().Run(ctx)
		}()
		defer func() { cancel(); <-done }()
	}
	return a.runProtocol(ctx)
}

func (a *Agent) refresher() *secrets.Refresher {
	return &secrets.Refresher{
		Backend:  func(ctx context.Context) (sdk.Backend, error) { return a.opts.Backends.For(ctx, config.RoleSecrets) },
		Secrets:  a.opts.Secrets,
		Interval: a.opts.SecretsRefresh,
		Log:      a.log,
		OnResult: func(r secrets.Result, err error) {
			a.opts.Metrics.SecretFetched(r.Name, fetchResult(err))
			if a.opts.OnSecret != nil {
				a.opts.OnSecret(r, err)
			}
		},
	}
}

// fetchResult classes a fetch for metrics: ok, or the error's class (not found,
// permission denied, unavailable, ...).
func fetchResult(err error) string {
	if err == nil {
		return "ok"
	}
	return sdk.CodeOf(err).String()
}
