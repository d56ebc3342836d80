// Package scale is the scale benchmark (cmd/tlsrelay-scale): a real etcd (Debian's
// etcd-server, a process of its own), real leader-eligible agents (`tlsrelay agent`,
// each with its real plugin processes) and many simulated units (internal/app/swarm)
// that join, ask and install as agents do. It times what a group of that size does
// when something changes — converging, losing its leader, rotating its CA, revoking
// departed units — and reports the leader's, etcd's and the units' costs. Nothing here
// is asserted: the figures go to docs/BENCHMARKS.md with the command that made them.
package scale

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/app/swarm"
)

// Options configure a run.
type Options struct {
	Config *config.Config
	// ConfigFile is the deployment's YAML, handed to the agents ("": the embedded one).
	ConfigFile string
	Units      int    // simulated units
	Leaders    int    // leader-eligible agents (real processes)
	Dir        string // etcd's data, the agents' state, files and logs
	Tlsrelay   string // the tlsrelay binary the agents run
	Etcd       string // the etcd binary
	// Scenarios run in this order after the group converges: failover, rotate, revoke.
	Scenarios []string
	// Waves are how many units depart in each wave of the revoke scenario.
	Waves []int
	// RevokeAfter is the agents' ca.revoke_departed_after.
	RevokeAfter time.Duration
	LeaseTTL    time.Duration
	Parallel    int // joins at once
	Pairs       int // pairs handshaking throughout a rotation
	Out         io.Writer
	Log         hclog.Logger
}

type run struct {
	opts     Options
	endpoint string
	etcd     *process
	agents   map[string]*process // by unit
	swarm    *swarm.Swarm
	client   *clientv3.Client
	start    time.Time
}

// Run runs the benchmark; every process it starts is stopped when it returns.
func Run(ctx context.Context, opts Options) error {
	if opts.Leaders < 1 {
		opts.Leaders = 1
	}
	if slices.Contains(opts.Scenarios, "failover") && opts.Leaders < 2 {
		return fmt.Errorf("--scenarios failover needs --leaders 2 or more: a standby to take over")
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "logs"), 0o700); err != nil {
		return err
	}
	r := &run{opts: opts, agents: map[string]*process{}}
	defer r.stop()
	var err error
	if r.etcd, r.endpoint, err = startEtcd(ctx, opts.Etcd, opts.Dir); err != nil {
		return err
	}
	r.printf("etcd %s at %s (pid %d), data in %s", opts.Etcd, r.endpoint, r.etcd.pid(), filepath.Join(opts.Dir, "etcd"))
	if r.client, err = clientv3.New(clientv3.Config{Endpoints: []string{r.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		return err
	}
	opts.Config.Relation.Etcd.LeaseTTL = opts.LeaseTTL
	if r.swarm, err = swarm.New(ctx, swarm.Options{Endpoints: []string{r.endpoint}, Config: opts.Config, LeaseTTL: opts.LeaseTTL, Log: opts.Log}); err != nil {
		return err
	}
	if err := r.startLeaders(ctx); err != nil {
		return err
	}
	if err := r.converge(ctx); err != nil {
		return err
	}
	for _, sc := range opts.Scenarios {
		var err error
		switch sc {
		case "failover":
			err = r.failover(ctx)
		case "rotate":
			err = r.rotate(ctx)
		case "revoke":
			err = r.revoke(ctx)
		default:
			err = fmt.Errorf("scenario %q: want failover, rotate or revoke", sc)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
	}
	return nil
}

func (r *run) printf(format string, args ...any) {
	fmt.Fprintf(r.opts.Out, format+"\n", args...)
}

func (r *run) stop() {
	if r.swarm != nil {
		r.swarm.Close()
	}
	if r.client != nil {
		r.client.Close()
	}
	for _, p := range r.agents {
		p.kill()
	}
	if r.etcd != nil {
		r.etcd.kill()
	}
}

// startAgent runs `tlsrelay agent` for a leader-eligible unit on the run's etcd. The
// agents share one state directory, as `tlsrelay up`'s do: a new leader's signer finds
// the group's CA there.
func (r *run) startAgent(unit string) error {
	dir := filepath.Join(r.opts.Dir, "units", strings.ReplaceAll(unit, "/", "-"))
	env := []string{
		"TLSRELAY_UNIT=" + unit,
		"TLSRELAY_RELATION_STORE=etcd",
		"TLSRELAY_RELATION_NAME=" + r.opts.Config.Relation.Name,
		"TLSRELAY_RELATION_ETCD_ENDPOINTS=" + r.endpoint,
		"TLSRELAY_RELATION_ETCD_LEASE_TTL=" + r.opts.LeaseTTL.String(),
		"TLSRELAY_CA_REVOKE_DEPARTED_AFTER=" + r.opts.RevokeAfter.String(),
		"TLSRELAY_STATE_DIR=" + filepath.Join(r.opts.Dir, "state"),
		"TLSRELAY_CERTIFICATE_OUTPUT_DIR=" + dir,
	}
	args := []string{"agent", "--log-level", "info"}
	if r.opts.ConfigFile != "" {
		args = append(args, "--config", r.opts.ConfigFile)
	}
	p, err := start(unit, filepath.Join(r.opts.Dir, "logs", strings.ReplaceAll(unit, "/", "-")+".log"), env, r.opts.Tlsrelay, args...)
	if err != nil {
		return err
	}
	r.agents[unit] = p
	return nil
}

// startLeaders starts the first agent and waits until it leads with the group's CA
// published, then the others, which wait as candidates.
func (r *run) startLeaders(ctx context.Context) error {
	if err := r.startAgent("ctl/0"); err != nil {
		return err
	}
	if err := r.await(ctx, "ctl/0 to lead with the CA published", time.Minute, func() bool {
		return r.swarm.Leader() == "ctl/0" && r.swarm.LeaderData("ca") != ""
	}); err != nil {
		return err
	}
	for i := 1; i < r.opts.Leaders; i++ {
		if err := r.startAgent(fmt.Sprintf("ctl/%d", i)); err != nil {
			return err
		}
	}
	r.printf("%d leader-eligible agents; ctl/0 leads (pid %d)", r.opts.Leaders, r.agents["ctl/0"].pid())
	return nil
}

// await polls ok until it holds, ctx ends or limit passes.
func (r *run) await(ctx context.Context, what string, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	// Conditions read every unit: look less often in a larger group.
	every := max(10*time.Millisecond, time.Duration(r.opts.Units/1000)*time.Millisecond)
	for !ok() {
		if time.Now().After(deadline) {
			errs := r.swarm.Errors(3)
			return fmt.Errorf("waited %s for %s; units' errors: %v", limit, what, errs)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}

// leaderProcess is the agent that leads now.
func (r *run) leaderProcess() (string, *process) {
	l := r.swarm.Leader()
	return l, r.agents[l]
}

// etcdFigures is etcd's database size (and in use) and revision.
func (r *run) etcdFigures(ctx context.Context) (size, inUse, revision int64) {
	st, err := r.client.Status(ctx, r.endpoint)
	if err != nil {
		return 0, 0, 0
	}
	return st.DbSize, st.DbSizeInUse, st.Header.Revision
}
