package unit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/backend"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/durable"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// Spec is one of several units a process runs: its name and output directory.
type Spec struct {
	Name string
	Dir  string
}

// ParseSpecs reads NAME=DIR,NAME=DIR (`tlsrelay agent --units`).
func ParseSpecs(s string) ([]Spec, error) {
	var specs []Spec
	for _, part := range strings.Split(s, ",") {
		name, dir, ok := strings.Cut(part, "=")
		if !ok || name == "" || dir == "" {
			return nil, fmt.Errorf("--units: %q is not NAME=DIR", part)
		}
		specs = append(specs, Spec{Name: name, Dir: dir})
	}
	return specs, nil
}

// ManyOptions configure RunMany.
type ManyOptions struct {
	Config *config.Config // the units' shared config; Unit and the output dir are each Spec's
	Units  []Spec
	Log    hclog.Logger
	Self   string
	// Store, if set, is the relation the units join (left open at the end); nil opens
	// the one Config names.
	Store relation.Store
	// StateDir, if set, is the plugin host's state directory instead of Config.StateDir.
	StateDir string
	// OnJoin sees each member as its unit joins; OnStatus each change of a unit's status.
	OnJoin   func(relation.Member)
	OnStatus func(agent.Status)
}

// RunMany runs several units in this process until ctx ends: one relation client, one
// plugin host and one group flush of written files (durable.SyncGroup) shared by
// all, an agent each (as `up --units-per-process` runs a
// large group on one machine). Configured secrets are not fetched: every unit would
// write the same files. It returns nil after every unit left, or the first error
// that stopped a unit (the others are stopped then).
func RunMany(ctx context.Context, opts ManyOptions) error {
	cfg, log := opts.Config, opts.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	checked, err := assemble.Check(cfg)
	if err != nil {
		return err
	}
	store := opts.Store
	if store == nil {
		var closeStore func()
		if store, closeStore, err = assemble.Store(cfg, log, assemble.StoreOptions{Owner: true}); err != nil {
			return err
		}
		defer closeStore()
	}
	host, err := assemble.Plugins(cfg, assemble.PluginOptions{Self: opts.Self, Log: log, StateDir: opts.StateDir})
	if err != nil {
		return err
	}
	defer host.Close()
	if err := checked.Custody(ctx, cfg, host); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(opts.Units))
	shared := &sharedByUnits{store: store, host: host, joining: make(chan struct{}, concurrentJoins)}
	for i, spec := range opts.Units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = runOne(ctx, opts, spec, shared, log, checked); errs[i] != nil {
				cancel() // one unit stopped by a failure stops the process: up reports it
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if fault.IsPermanent(err) {
			return err
		}
	}
	return errors.Join(errs...)
}

// concurrentJoins bounds the units of one process joining at once: a join is a few etcd
// writes (lease, name, candidacy), and one at a time a process of 60 units took seconds
// to bring them all in.
const concurrentJoins = 16

// sharedByUnits is what the units of one process share.
type sharedByUnits struct {
	store   relation.Store
	host    *backend.Host
	joining chan struct{} // a slot per unit joining at once
	// files flushes the units' written files together: in a burst (a group coming up,
	// a CA rotation) one syncfs makes dozens durable, where an fsync of each of 1,000
	// units' files was a fair part of their issuance on disk (docs/BENCHMARKS.md).
	files durable.SyncGroup
}

// runOne joins one unit (holding a slot of joining meanwhile) and runs its agent until
// ctx ends, then leaves.
func runOne(ctx context.Context, opts ManyOptions, spec Spec, shared *sharedByUnits, log hclog.Logger, checked assemble.Checked) error {
	unitCfg := *opts.Config.ForUnit(spec.Name)
	unitCfg.Certificate.Output.Dir = spec.Dir
	select {
	case shared.joining <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	member, err := join(ctx, shared.store, &unitCfg, log.Named(spec.Name))
	<-shared.joining
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() {
		leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := member.Leave(leaveCtx); err != nil && !errors.Is(err, relation.ErrNotJoined) {
			log.Warn("leaving the relation", "unit", spec.Name, "error", err)
		}
	}()
	if opts.OnJoin != nil {
		opts.OnJoin(member)
	}
	agentOpts, err := checked.Agent(&unitCfg, member, shared.host, log) // no secrets: they would all write the same files
	if err != nil {
		return err
	}
	agentOpts.OnStatus = opts.OnStatus
	agentOpts.Sync = shared.files.Sync
	a, err := agent.New(agentOpts)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
