// Package unit runs one unit of a deployment, as `tlsrelay agent` does on each host:
// it opens the configured relation store, joins the relation, runs the agent until its
// context ends, then leaves (the lease revoked, the leadership passed on) and stops its
// plugins. A reloaded config restarts the agent and its plugins on the same membership.
package unit

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/backoff"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
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

// Check is what a config must pass, beyond config.Load, before a unit runs it
// (assemble.Check). A reload is refused when it fails.
func Check(cfg *config.Config) error {
	_, err := assemble.Check(cfg)
	return err
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
	store, closeStore, err := assemble.Store(cfg, log, assemble.StoreOptions{OnWatchLag: onLag, Owner: true})
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
	checked, err := assemble.Check(cfg)
	if err != nil {
		return nil, err
	}
	host, err := assemble.Plugins(cfg, assemble.PluginOptions{Self: u.opts.Self, Log: log.Named(cfg.Unit), Metrics: u.opts.Metrics})
	if err != nil {
		return nil, err
	}
	defer host.Close()
	if err := checked.Custody(ctx, cfg, host); err != nil {
		return nil, err
	}
	opts, err := checked.Agent(cfg, member, host, log)
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
