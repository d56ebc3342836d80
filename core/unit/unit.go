// Package unit runs one unit of a deployment, as `tlsrelay agent` does on each host:
// it opens the configured relation store, joins the relation, runs the agent until its
// context ends, then leaves (the lease revoked, the leadership passed on) and stops its
// plugins. A reloaded config restarts the agent and its plugins on the same membership.
package unit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tlsrelay/tlsrelay/core/backoff"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/sdk"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/audit"
	"github.com/tlsrelay/tlsrelay/core/backend"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
)

// Options configure a Unit.
type Options struct {
	Config *config.Config
	Log    hclog.Logger
	// Self is the tlsrelay binary that serves built-in backends (default: this one).
	Self string
	// OnStatus sees each change of the unit's status.
	OnStatus func(agent.Status)
	// Once: leave as soon as the unit holds a current certificate (agent.Options.Once).
	Once bool
	// Metrics, if set, counts what the unit, its plugins and its relation watch do.
	Metrics *metrics.Metrics
	// Reload delivers new configs (SIGHUP), each already passed through Check. The unit
	// restarts its agent and plugins with it; when the unit's name, its relation or its
	// state directory changed it also leaves the relation and joins again.
	Reload <-chan *config.Config
}

// Unit is one unit of a deployment, run by Run.
type Unit struct {
	opts  Options
	agent atomic.Pointer[agent.Agent] // the agent running now, for Health
}

// New prepares a unit; Run runs it.
func New(opts Options) *Unit {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	return &Unit{opts: opts}
}

// Run runs a unit until ctx ends (see Unit.Run).
func Run(ctx context.Context, opts Options) error { return New(opts).Run(ctx) }

// Check is what a config must pass, beyond config.Load, before a unit runs it: its
// ca_seal key readable and its signing policy valid. A reload is refused when it fails.
func Check(cfg *config.Config) error {
	_, err := prepare(cfg)
	return err
}

// prepared is what a config gives every agent it runs, read once: the ca_seal key and
// the signing policy.
type prepared struct {
	sealKey []byte
	policy  *policy.Policy
}

func prepare(cfg *config.Config) (prepared, error) {
	sealKey, err := caseal.LoadKey(cfg.CASeal.KeyFile)
	if err != nil {
		return prepared{}, err
	}
	pol, err := cfg.SigningPolicy()
	if err != nil {
		return prepared{}, err
	}
	return prepared{sealKey: sealKey, policy: pol}, nil
}

// agentOptions are the agent options cfg gives its unit (cfg.Unit's member, files in
// cfg.Certificate.Output.Dir); callers add what only they have (status, secrets, metrics).
func (p prepared) agentOptions(cfg *config.Config, member relation.Member, backends agent.Backends, log hclog.Logger) (agent.Options, error) {
	trail, err := audit.Open(audit.Options{Path: cfg.Audit.Path, MaxBytes: cfg.Audit.MaxBytes, Keep: cfg.Audit.Keep,
		Relation: cfg.Relation.Name, Unit: cfg.Unit})
	if err != nil {
		return agent.Options{}, fault.Permanent(err)
	}
	return agent.Options{
		Audit:  trail,
		Member: member, Backends: backends, Certificate: cfg.Certificate, Dir: cfg.Certificate.Output.Dir,
		Host: config.LocalHost(), Log: log, Relation: cfg.Relation.Name, SealKey: p.sealKey, CARef: cfg.CA.Ref,
		Policy: p.policy, SignerName: cfg.Roles.Signer, CARotateBefore: cfg.CA.RotateBefore, CARotationTrustTimeout: cfg.CA.RotationTrustTimeout,
		CARotationReissueTimeout: cfg.CA.RotationReissueTimeout,
		CARemoteRecheck:          cfg.CA.RemoteRecheck,
		RevokeDepartedAfter:      cfg.CA.RevokeDepartedAfter,
	}, nil
}

// Health is the running agent's (agent.Agent.Health); safe from any goroutine.
func (u *Unit) Health() (ok bool, detail string) {
	a := u.agent.Load()
	if a == nil {
		return false, u.opts.Config.Unit + ": joining the relation"
	}
	return a.Health()
}

// Run runs the unit until ctx ends, then leaves the relation. It returns nil after a
// clean leave, or the error that stopped the unit.
func (u *Unit) Run(ctx context.Context) error {
	cfg := u.opts.Config
	for {
		next, err := u.runMember(ctx, cfg)
		if err != nil || next == nil {
			return err
		}
		u.opts.Log.Info("the unit, relation or state_dir changed: joined again with the reloaded config")
		cfg = next
	}
}

// runMember joins the relation and runs agents on it, one per config, until ctx ends
// or a reloaded config needs another membership (returned).
func (u *Unit) runMember(ctx context.Context, cfg *config.Config) (*config.Config, error) {
	log := u.opts.Log
	cfg = cfg.ForUnit(cfg.Unit) // the unit's kind, if the group has several
	if err := Check(cfg); err != nil {
		return nil, err
	}
	var onLag func(time.Duration)
	if u.opts.Metrics != nil {
		onLag = u.opts.Metrics.WatchLag
	}
	store, closeStore, err := openStore(cfg, log, onLag, true)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	member, err := join(ctx, store, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	if es, ok := store.(*etcd.Store); ok && u.opts.Metrics != nil {
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go u.reportEtcdDB(watchCtx, es, cfg)
	}
	defer func() {
		leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// A unit stopped (SIGTERM, --once) will be back: its certificate is not revoked
		// (protocol.NoteBack). Decommissioning is `tlsrelay revoke` or `agent --leave`.
		if err := member.LeaveWithNote(leaveCtx, protocol.NoteBack); err != nil {
			log.Warn("leaving the relation", "error", err)
		}
	}()
	for {
		next, err := u.runAgent(ctx, cfg, member)
		if err != nil || next == nil {
			return nil, err
		}
		next = next.ForUnit(next.Unit)
		if !sameMembership(cfg, next) {
			return next, nil
		}
		log.Info("reloaded the config: agent and plugins restarted", "unit", next.Unit)
		cfg = next
	}
}

// sameMembership says whether a reloaded config can keep the running membership.
func sameMembership(a, b *config.Config) bool {
	return a.Unit == b.Unit && a.StateDir == b.StateDir && reflect.DeepEqual(a.Relation, b.Relation)
}

// runAgent runs one agent, with its own plugins, until ctx ends (nil, or the error that
// stopped it) or a config arrives on Reload (returned, the agent stopped).
func (u *Unit) runAgent(ctx context.Context, cfg *config.Config, member relation.Member) (*config.Config, error) {
	log := u.opts.Log
	deps, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	host, err := backend.New(backend.Options{Self: u.opts.Self, Plugins: cfg.Plugins, Roles: cfg.Roles,
		StateDir: cfg.StateDir, Logger: log.Named(cfg.Unit), OnRestart: u.opts.Metrics.PluginRestarted,
		Validity: cfg.Certificate.Validity, IdleStop: cfg.PluginIdle})
	if err != nil {
		return nil, err
	}
	defer host.Close()
	if err := checkCustody(ctx, cfg, deps, host); err != nil {
		return nil, err
	}
	opts, err := deps.agentOptions(cfg, member, host, log)
	if err != nil {
		return nil, err
	}
	opts.OnStatus, opts.Once, opts.Metrics = u.opts.OnStatus, u.opts.Once, u.opts.Metrics
	opts.Secrets, opts.SecretsRefresh = cfg.Secrets, cfg.SecretsRefresh
	a, err := agent.New(opts)
	if err != nil {
		return nil, err
	}
	u.agent.Store(a)
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	select {
	case err := <-done:
		return nil, err
	case next := <-u.opts.Reload:
		cancel()
		if err := <-done; err != nil {
			log.Warn("the agent stopped with an error as it was reloaded", "error", err)
		}
		return next, nil
	}
}

// join joins the relation, retrying while etcd cannot be reached; a name held by another
// live agent stops the unit at once.
func join(ctx context.Context, store relation.Store, cfg *config.Config, log hclog.Logger) (relation.Member, error) {
	retry := backoff.New(200*time.Millisecond, 10*time.Second)
	for {
		m, err := store.Join(ctx, cfg.Unit, relation.JoinOptions{LeaderEligible: cfg.Relation.LeaderEligible})
		if err == nil {
			log.Info("joined the relation", "relation", cfg.Relation.Name, "store", cfg.Relation.Store, "leader_eligible", cfg.Relation.LeaderEligible)
			return m, nil
		}
		if errors.Is(err, etcd.ErrDuplicate) || ctx.Err() != nil || cfg.Relation.Store == config.StoreMemory {
			return nil, err
		}
		wait := retry.Next()
		log.Warn("cannot join the relation yet; retrying", "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// OpenStore opens the relation store cfg names; close releases it (and stops an embedded
// etcd).
// An embedded store another process serves is reached as a client of that process.
func OpenStore(cfg *config.Config, log hclog.Logger) (store relation.Store, close func(), err error) {
	return openStore(cfg, log, nil, false)
}

// openStore is OpenStore with the etcd store's watch lag reported to onLag. The owner of
// an embedded store (the agent whose state directory holds it) waits for another process
// that serves it meanwhile to stop, rather than depend on it.
func openStore(cfg *config.Config, log hclog.Logger, onLag func(time.Duration), owner bool) (store relation.Store, close func(), err error) {
	switch cfg.Relation.Store {
	case config.StoreMemory:
		m := relation.NewMemory(protocol.Schema())
		return m, func() { m.Close() }, nil
	case config.StoreEmbedded:
		dir := filepath.Join(cfg.StateDir, "etcd")
		srv, err := embedded.Start(embedded.Options{Dir: dir, Wait: owner})
		for deadline := time.Now().Add(2 * time.Second); !owner && startingElsewhere(err) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond) // another process is starting it: its endpoint comes soon
			srv, err = embedded.Start(embedded.Options{Dir: dir})
		}
		if served, ok := errors.AsType[*embedded.ServedError](err); ok && served.Endpoint != "" {
			// Another process (a running agent, `up`) serves it: reach it as a client.
			s, err := etcd.Open(etcd.Options{Endpoints: []string{served.Endpoint}, Relation: cfg.Relation.Name, Schema: protocol.Schema(),
				LeaseTTL: cfg.Relation.Etcd.LeaseTTL, Log: log, OnWatchLag: onLag})
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %w", served, err)
			}
			return s, func() { s.Close() }, nil
		}
		if err != nil {
			return nil, nil, err
		}
		s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint()}, Relation: cfg.Relation.Name, Schema: protocol.Schema(),
			LeaseTTL: cfg.Relation.Etcd.LeaseTTL, Log: log, OnWatchLag: onLag})
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return s, func() { s.Close(); srv.Close() }, nil
	case config.StoreEtcd:
		s, err := openEtcd(cfg, log, onLag)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	return nil, nil, fmt.Errorf("relation.store: %q is not one of %v", cfg.Relation.Store, config.Stores)
}

// startingElsewhere: err says another process is starting the embedded store.
func startingElsewhere(err error) bool {
	served, ok := errors.AsType[*embedded.ServedError](err)
	return ok && served.Endpoint == ""
}

// OpenEtcd opens the etcd cluster cfg.Relation.Etcd names.
func OpenEtcd(cfg *config.Config, log hclog.Logger) (*etcd.Store, error) {
	return openEtcd(cfg, log, nil)
}

func openEtcd(cfg *config.Config, log hclog.Logger, onLag func(time.Duration)) (*etcd.Store, error) {
	e := cfg.Relation.Etcd
	opts := etcd.Options{Endpoints: e.Endpoints, Username: e.Username, Password: e.Password,
		Relation: cfg.Relation.Name, Schema: protocol.Schema(), LeaseTTL: e.LeaseTTL, Log: log, OnWatchLag: onLag}
	if e.PasswordFile != "" {
		data, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("relation.etcd.password_file: %w", err)
		}
		opts.Password = strings.TrimRight(string(data), "\r\n")
	}
	if e.TLS.CAFile != "" || e.TLS.CertFile != "" {
		tls, err := etcd.TLSConfig(e.TLS.CAFile, e.TLS.CertFile, e.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		opts.TLS = tls
	}
	return etcd.Open(opts)
}

// checkCustody refuses a ca_seal the signer gives nothing to seal with: sealing needs a
// signer that exports its CA key and imports one (custody exportable). A signer that
// cannot start here is left to the agent, which retries it.
func checkCustody(ctx context.Context, cfg *config.Config, deps prepared, host *backend.Host) error {
	if len(deps.sealKey) == 0 || !cfg.Relation.LeaderEligible || cfg.Roles.Signer == "" {
		return nil
	}
	info, err := host.Info(ctx, cfg.Roles.Signer)
	if err != nil {
		return nil
	}
	if custody := info.Custody(); custody != sdk.CustodyExportable {
		return fault.Permanent(fmt.Errorf("ca_seal (key_file %s): the signer %s (roles.signer) keeps its CA with custody %s: "+
			"it does not both export its CA key (ca_export) and import one (ca_import), so there is nothing to seal; "+
			"remove ca_seal (a shared or remote CA needs none)", cfg.CASeal.KeyFile, cfg.Roles.Signer, custody))
	}
	return nil
}
