package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/backend"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/verify"
	"github.com/tlsrelay/tlsrelay/plugins/builtin"
)

type upFlags struct {
	units    int
	dir      string
	config   string
	timeout  time.Duration
	parallel int
	backend  string
}

func newUpCommand() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole peer group on this machine, issue its certificates and prove them",
		Long: `up starts N units on an in-memory relation, each with its own backend plugin
processes, lets them run the protocol until every unit holds a certificate, then
proves the result: every certificate chains to the CA and names its unit, every key
file is mode 0600, and every pair of units completes a mutual-TLS handshake.
Files land in DIR/<unit, with / as ->/{tls.key,tls.crt,ca.crt}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runUp(ctx, cmd, f)
		},
	}
	cmd.Flags().IntVar(&f.units, "units", 3, "number of units in the group")
	cmd.Flags().StringVar(&f.dir, "dir", "tlsrelay-up", "directory for the units' files and the backends' state")
	cmd.Flags().StringVar(&f.config, "config", "", "deployment YAML (default: the embedded configs/tlsrelay.yaml)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up if the group has not converged by then")
	cmd.Flags().IntVar(&f.parallel, "parallel", 8, "concurrent handshakes while proving mutual TLS")
	cmd.Flags().StringVar(&f.backend, "backend", "", "one backend for both the csr and signer roles: "+strings.Join(builtin.Names(), ", ")+", or any configured plugin")
	return cmd
}

func runUp(ctx context.Context, cmd *cobra.Command, f upFlags) error {
	if f.units < 1 {
		return fmt.Errorf("--units must be at least 1, not %d", f.units)
	}
	cfg, err := config.Load(f.config, builtin.Names())
	if err != nil {
		return err
	}
	if f.backend != "" {
		if err := cfg.UseBackend(f.backend, builtin.Names()); err != nil {
			return fmt.Errorf("--backend %s: %w", f.backend, err)
		}
	}
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return err
	}
	log := newLogger(cmd)
	out, progress := cmd.OutOrStdout(), newProgress(cmd.ErrOrStderr(), f.units)
	fmt.Fprintf(progress.w, "tlsrelay up: %d units, csr=%s signer=%s, files in %s\n", f.units, cfg.Roles.CSR, cfg.Roles.Signer, dir)

	g := &group{cfg: cfg, dir: dir, log: log, progress: progress, store: relation.NewMemory()}
	defer g.close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := g.start(ctx, f.units); err != nil {
		return err
	}
	if err := progress.waitAll(ctx); err != nil {
		return fmt.Errorf("group did not converge: %w\n%s", err, progress.pending())
	}
	g.stop()
	progress.printf("all %d units hold certificates after %s; proving them\n", f.units, progress.elapsed())
	return prove(ctx, out, progress, g.units, f.parallel)
}

// group is the running units of one `up`.
type group struct {
	cfg      *config.Config
	dir      string
	log      hclog.Logger
	progress *progress
	store    *relation.Memory
	units    []verify.Unit
	hosts    []*backend.Host
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func (g *group) start(ctx context.Context, n int) error {
	ctx, g.cancel = context.WithCancel(ctx)
	app, _, _ := strings.Cut(g.cfg.Unit, "/")
	hostInfo := config.LocalHost()
	for i := range n {
		name := fmt.Sprintf("%s/%d", app, i)
		u := verify.Unit{Name: name, Dir: filepath.Join(g.dir, protocol.UnitDNSName(name))}
		a, err := g.newAgent(ctx, u, hostInfo)
		if err != nil {
			return err
		}
		g.units = append(g.units, u)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := a.Run(ctx); err != nil {
				g.progress.fail(name, err)
			}
		}()
	}
	return nil
}

func (g *group) newAgent(ctx context.Context, u verify.Unit, hostInfo config.Host) (*agent.Agent, error) {
	host, err := backend.New(backend.Options{
		Plugins:  g.cfg.Plugins,
		Roles:    g.cfg.Roles,
		StateDir: filepath.Join(g.dir, "state"),
		Logger:   g.log.Named(u.Name),
	})
	if err != nil {
		return nil, err
	}
	g.hosts = append(g.hosts, host)
	member, err := g.store.Join(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	return agent.New(agent.Options{
		Member: member, Backends: host, Certificate: g.cfg.Certificate,
		Dir: u.Dir, Host: hostInfo, Log: g.log, OnStatus: g.progress.update,
	})
}

// stop ends the agents; close also ends their plugin processes.
func (g *group) stop() {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
}

func (g *group) close() {
	g.stop()
	var wg sync.WaitGroup
	for _, h := range g.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.Close() }()
	}
	wg.Wait()
	g.store.Close()
}

func newLogger(cmd *cobra.Command) hclog.Logger {
	level, _ := cmd.Flags().GetString("log-level")
	return hclog.New(&hclog.LoggerOptions{
		Name:   "tlsrelay",
		Level:  hclog.LevelFromString(level),
		Output: cmd.ErrOrStderr(),
	})
}

// errNotProven is returned when the proof fails; the table says why.
var errNotProven = errors.New("the group's certificates did not prove out")
