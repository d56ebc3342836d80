// Package up runs a whole peer group on one machine and proves its certificates: what
// `tlsrelay up` does. On the embedded store (the default) it starts a real single-member
// etcd and runs every unit as its own `tlsrelay agent` process with its own plugin
// processes, the topology of units on many hosts; on the memory store every unit runs in
// this process. Then it checks every certificate and mutual TLS between the units.
package up

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/unit"
	"github.com/tlsrelay/tlsrelay/internal/app/verify"
)

// Options configure Run.
type Options struct {
	Config *config.Config
	// ConfigFile is the operator's YAML (may be empty), handed to each agent process.
	ConfigFile string
	Units      int
	Dir        string
	// Parallel bounds concurrent handshakes in the proof.
	Parallel int
	Out      io.Writer // the result table
	Progress io.Writer // progress lines
	Log      hclog.Logger
	// LogLevel is handed to agent processes; their logs go to DIR/logs/<unit>.log.
	LogLevel string
	// Self is the tlsrelay binary (default: this one).
	Self string
	// InProcess runs every unit in this process, sharing one plugin host, on the
	// configured store (still etcd: embedded by default); the memory store always does.
	InProcess bool
	// AllPairs proves mutual TLS between every pair of units, not only ring neighbours.
	AllPairs bool
	// UnitsPerProcess is how many units each agent process runs, sharing its plugins;
	// 0 is DefaultUnitsPerProcess(Units).
	UnitsPerProcess int
	// Stats, when set, receives what the run measured.
	Stats *Stats
}

// Stats is what a run measured.
type Stats struct {
	Issuance time.Duration // from the start until every unit held a certificate
	// What the units read from etcd (in-process runs on etcd): bytes of keys and
	// values by reads and watches, full reads of a scope, watch events; in all, by
	// the leader, and by the other units (mean and most).
	EtcdBytesRead, EtcdReads, EtcdEvents int64
	LeaderBytesRead                      int64
	FollowerBytesMean, FollowerBytesMax  int64
	FollowerEventsMean                   int64
}

// measure fills s from the read counters of the store and of each member, where they
// count (relation.ReadCounter: etcd's do, memory's have nothing to count).
func (s *Stats) measure(ctx context.Context, store relation.Store, members []relation.Member) {
	counter, ok := store.(relation.ReadCounter)
	if !ok {
		return
	}
	st := counter.ReadCounts()
	s.EtcdBytesRead, s.EtcdReads, s.EtcdEvents = st.BytesRead, st.Reads, st.Events
	snap, err := members[0].Snapshot(ctx)
	if err != nil {
		return
	}
	var followers, events int64
	for _, m := range members {
		mc, ok := m.(relation.ReadCounter)
		if !ok {
			return
		}
		read := mc.ReadCounts()
		if m.Unit() == snap.Leader {
			s.LeaderBytesRead = read.BytesRead
			continue
		}
		followers++
		s.FollowerBytesMean += read.BytesRead
		s.FollowerBytesMax = max(s.FollowerBytesMax, read.BytesRead)
		events += read.Events
	}
	if followers > 0 {
		s.FollowerBytesMean /= followers
		s.FollowerEventsMean = events / followers
	}
}

// groupGOGC is the GOGC `up` runs itself and its agents (and so their plugins) with,
// where the environment sets none. Issuance is a burst of small allocations in every
// process at once; at 400 the collectors run a quarter as often as at Go's default
// (100), for somewhat more memory (docs/BENCHMARKS.md has the measured trade).
const groupGOGC = 400

// Run runs the group until every unit holds a certificate, stops it, and proves it.
func Run(ctx context.Context, opts Options) error {
	if n := KindCount(opts.Config); n > 0 {
		opts.Units = n
	}
	if opts.Units < 1 {
		return fmt.Errorf("--units must be at least 1, not %d", opts.Units)
	}
	if opts.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		opts.Self = self
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	cfg := opts.Config
	// One `up` per directory: two would race on the same units' files.
	if err := safedir.Ensure(opts.Dir, 0o755); err != nil {
		return fault.Permanent(fmt.Errorf("--dir: %w", err))
	}
	unlock, err := safedir.Lock(opts.Dir)
	if err != nil {
		return fault.Permanent(fmt.Errorf("--dir: %w", err))
	}
	defer unlock()
	p := newProgress(opts.Progress, opts.Units)
	units := unitsOf(cfg, opts.Dir, opts.Units)
	fmt.Fprintf(p.w, "tlsrelay up: %d units%s, store=%s, csr=%s signer=%s, files in %s\n",
		opts.Units, kindsLine(cfg), cfg.Relation.Store, cfg.Roles.CSR, cfg.Roles.Signer, opts.Dir)
	var run func(context.Context, Options, []verify.Unit, *progress, *timings) error
	switch {
	case opts.InProcess || cfg.Relation.Store == config.StoreMemory:
		run = runInProcess
	default:
		run = runProcesses
	}
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(groupGOGC))
	}
	t := &timings{start: time.Now()}
	if err := run(ctx, opts, units, p, t); err != nil {
		return err
	}
	if opts.Stats != nil {
		opts.Stats.Issuance = time.Since(t.start)
	}
	t.mark("issuance")
	p.printf("all %d units hold certificates after %s; proving them\n", opts.Units, p.elapsed())
	pol, err := cfg.SigningPolicy()
	if err != nil {
		return err
	}
	err = prove(ctx, opts.Out, p, units, pol, opts.Parallel, opts.AllPairs)
	t.mark("proof")
	fmt.Fprintf(opts.Out, "time: %s\n", t)
	if t.usage != "" {
		fmt.Fprintln(opts.Out, t.usage)
	}
	return err
}

// timings records where the time of a run went.
type timings struct {
	start, last time.Time
	parts       []string
	usage       string // the group's memory and CPU at convergence (groupUsage)
}

func (t *timings) mark(what string) {
	now := time.Now()
	from := t.last
	if from.IsZero() {
		from = t.start
	}
	t.parts = append(t.parts, fmt.Sprintf("%s %s", what, now.Sub(from).Round(time.Millisecond)))
	t.last = now
}

func (t *timings) String() string { return strings.Join(t.parts, ", ") }

// unitsOf names the group's units with their output directories: each kind's units
// (kinds.<kind>.count, or .ids) where the config counts any (KindCount), else
// <application>/0..n-1.
func unitsOf(cfg *config.Config, dir string, n int) []verify.Unit {
	var names []string
	if KindCount(cfg) > 0 {
		for _, kind := range cfg.KindNames() {
			names = append(names, cfg.Kinds[kind].UnitNames(kind)...)
		}
	} else {
		app, _, _ := strings.Cut(cfg.Unit, "/")
		for i := range n {
			names = append(names, fmt.Sprintf("%s/%d", app, i))
		}
	}
	units := make([]verify.Unit, len(names))
	for i, name := range names {
		c := cfg.ForUnit(name).Certificate
		cn, _ := c.CommonNameFor(name) // the config was checked: it renders
		units[i] = verify.Unit{Name: name, Dir: filepath.Join(dir, protocol.UnitDNSName(name)), CommonName: cn, Profile: c.Profile}
	}
	return units
}

// kindsLine says what kinds the group has, as " (2 amphora: server, 3 controller:
// client, leader-eligible)"; "" for a group of one kind.
func kindsLine(cfg *config.Config) string {
	if KindCount(cfg) == 0 {
		return ""
	}
	var parts []string
	for _, kind := range cfg.KindNames() {
		if names := cfg.Kinds[kind].UnitNames(kind); len(names) > 0 {
			n, c := len(names), cfg.ForUnit(names[0])
			part := fmt.Sprintf("%d %s: %s", n, kind, cmp.Or(c.Certificate.Profile, "peer"))
			if c.Relation.LeaderEligible {
				part += ", leader-eligible"
			}
			parts = append(parts, part)
		}
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// KindCount is how many units the config's kinds count (kinds.*.count, or the units
// kinds.*.ids name): the group `up` runs when it is above 0.
func KindCount(cfg *config.Config) int {
	n := 0
	for name, k := range cfg.Kinds {
		n += len(k.UnitNames(name))
	}
	return n
}

// How many agent processes up starts by default. Each process has a fixed cost (its
// start, its plugin's start, an etcd client and its watch streams) and units in one
// process share it, so a small group runs fastest in few processes; a large one needs
// more, or one process's etcd client and its locks become the queue. Measured on 2
// cores (docs/BENCHMARKS.md): 100 units ran fastest in 4 processes, 1,000 in 8, and
// 10,000 took 1.16 times as long in 4 as in 16.
const (
	minProcesses          = 4
	maxProcesses          = 16
	targetUnitsPerProcess = 125
)

// DefaultUnitsPerProcess is one unit per process up to minProcesses units; then about
// targetUnitsPerProcess units a process, in no fewer than minProcesses processes and no
// more than maxProcesses.
func DefaultUnitsPerProcess(units int) int {
	processes := min(max(units/targetUnitsPerProcess, minProcesses), maxProcesses)
	return max(1, (units+processes-1)/processes)
}

// runProcesses runs each unit as a `tlsrelay agent` process on etcd: the embedded member
// (started here, data in DIR/etcd), or the configured cluster.
func runProcesses(ctx context.Context, opts Options, units []verify.Unit, p *progress, t *timings) error {
	cfg := *opts.Config
	endpoints := cfg.Relation.Etcd.Endpoints
	if cfg.Relation.Store == config.StoreEmbedded {
		srv, err := embedded.Start(embedded.Options{Dir: filepath.Join(opts.Dir, "etcd")})
		if err != nil {
			return err
		}
		defer srv.Close()
		endpoints = []string{srv.Endpoint()}
		cfg.Relation.Store, cfg.Relation.Etcd.Endpoints = config.StoreEtcd, endpoints
		t.mark("etcd start")
		p.printf("embedded etcd ready at %s (data in %s)\n", srv.Endpoint(), filepath.Join(opts.Dir, "etcd"))
	}
	store, err := assemble.Etcd(&cfg, opts.Log)
	if err != nil {
		return err
	}
	defer store.Close()
	obs, err := store.Observe(ctx)
	if err != nil {
		return fmt.Errorf("relation on %v: %w", endpoints, err)
	}
	defer obs.Close()

	g := &processGroup{self: opts.Self, logDir: filepath.Join(opts.Dir, "logs")}
	defer g.stop()
	perProcess := opts.UnitsPerProcess
	if perProcess <= 0 {
		perProcess = DefaultUnitsPerProcess(len(units))
	}
	env := []string{
		"TLSRELAY_RELATION_STORE=etcd",
		"TLSRELAY_RELATION_ETCD_ENDPOINTS=" + strings.Join(endpoints, ","),
		"TLSRELAY_STATE_DIR=" + filepath.Join(opts.Dir, "state"),
		"TLSRELAY_ROLES_CSR=" + cfg.Roles.CSR,
		"TLSRELAY_ROLES_SIGNER=" + cfg.Roles.Signer,
	}
	if os.Getenv("GOGC") == "" {
		env = append(env, fmt.Sprintf("GOGC=%d", groupGOGC))
	}
	processes := 0
	for lo := 0; lo < len(units); lo += perProcess {
		batch := units[lo:min(lo+perProcess, len(units))]
		unitEnv := append(env, "TLSRELAY_UNIT="+batch[0].Name, "TLSRELAY_CERTIFICATE_OUTPUT_DIR="+batch[0].Dir)
		var extra []string
		label := batch[0].Name
		if len(batch) > 1 {
			specs := make([]string, len(batch))
			for i, u := range batch {
				specs[i] = u.Name + "=" + u.Dir
			}
			extra = []string{"--units", strings.Join(specs, ",")}
			label = fmt.Sprintf("%s+%d", batch[0].Name, len(batch)-1)
		}
		if err := g.start(label, opts.ConfigFile, opts.LogLevel, unitEnv, p.fail, extra...); err != nil {
			return err
		}
		processes++
	}
	t.mark("agents start")
	p.printf("%d agent processes started for %d units (logs in %s)\n", processes, len(units), g.logDir)
	if err := follow(ctx, obs, p); err != nil {
		if fault.IsPermanent(err) {
			return err // the cause, as the last line
		}
		return fmt.Errorf("group did not converge: %w\n%s", err, p.pending())
	}
	t.usage = groupUsage(2) // now, while every agent and plugin still runs
	return nil
}

// follow feeds the units' published status to the progress until all are done.
func follow(ctx context.Context, obs relation.Observer, p *progress) error {
	seen := map[string]agent.Status{}
	for {
		snap, err := obs.Snapshot(ctx)
		if err != nil {
			return err
		}
		for name, bag := range snap.Units {
			s := agent.StatusFromBag(name, snap.Leader == name, bag)
			if s.State == "" {
				continue
			}
			if old, ok := seen[name]; !ok || old.State != s.State || old.Serial != s.Serial || old.Leader != s.Leader || old.Error != s.Error ||
				old.CAState != s.CAState || old.Trusts != s.Trusts {
				seen[name] = s
				p.update(s)
			}
		}
		select {
		case <-p.done:
			return nil
		case err := <-p.fatal:
			return err
		case <-snap.Changed:
		case <-ctx.Done():
			return ctx.Err()
		}
		// A snapshot is O(units): one per change would be O(units²) while a large group
		// converges. Changes that come meanwhile are read together.
		select {
		case <-time.After(followEvery):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// followEvery is the least time between two reads of the group's progress.
const followEvery = 50 * time.Millisecond

// runInProcess runs every unit in this process (unit.RunMany: one plugin host, one
// relation client), on the memory relation or on etcd.
func runInProcess(ctx context.Context, opts Options, units []verify.Unit, p *progress, t *timings) error {
	cfg := *opts.Config
	cfg.StateDir = opts.Dir // an embedded etcd keeps its data in DIR/etcd
	store, closeStore, err := assemble.Store(&cfg, opts.Log, assemble.StoreOptions{})
	if err != nil {
		return err
	}
	defer closeStore()
	if cfg.Relation.Store != config.StoreMemory {
		t.mark("etcd start")
	}
	specs := make([]unit.Spec, len(units))
	for i, u := range units {
		specs[i] = unit.Spec{Name: u.Name, Dir: u.Dir}
	}
	var mu sync.Mutex
	var members []relation.Member
	ctx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		err := unit.RunMany(ctx, unit.ManyOptions{Config: &cfg, Units: specs, Log: opts.Log, Self: opts.Self,
			Store: store, StateDir: filepath.Join(opts.Dir, "state"), OnStatus: p.update,
			OnJoin: func(m relation.Member) { mu.Lock(); members = append(members, m); mu.Unlock() }})
		if ctx.Err() == nil { // the units stopped before the group converged: RunMany stops them all on a failure
			p.fail("units", fault.Permanent(cmp.Or(err, errors.New("every unit stopped"))))
		}
	}()
	defer func() { cancel(); <-ran }()
	if err := p.waitAll(ctx); err != nil {
		if fault.IsPermanent(err) {
			return err // the cause, as the last line
		}
		return fmt.Errorf("group did not converge: %w\n%s", err, p.pending())
	}
	if opts.Stats != nil {
		mu.Lock()
		opts.Stats.measure(ctx, store, members)
		mu.Unlock()
	}
	t.usage = groupUsage(1)
	return nil
}
