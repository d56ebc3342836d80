package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/app/up"
	"github.com/tlsrelay/tlsrelay/internal/termsafe"
	"github.com/tlsrelay/tlsrelay/plugins/builtin"
)

type upFlags struct {
	units    int
	dir      string
	config   string
	timeout  time.Duration
	parallel int
	backend  string
	store    string
	inProc   bool
	allPairs bool
	perProc  int
}

func newUpCommand() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole peer group on this machine, issue its certificates and prove them",
		Long: `up starts a real single-member etcd embedded in tlsrelay (data in DIR/etcd) and N units,
each its own 'tlsrelay agent' process with its own backend plugin processes (the same
topology as units on many hosts), lets them run the protocol until every unit holds a
certificate, then proves the result: every certificate chains to the CA and names its
unit, every key file is mode 0600, every unit holds the same CA bundle, and each unit
completes a mutual-TLS handshake with its neighbour in a ring (--all-pairs: with every
other unit). Files land in DIR/<unit, with / as ->/{tls.key,tls.crt,ca.crt}; agent logs
in DIR/logs (at info, or --log-level when lower). Beyond 4 units, units share agent processes (and their plugins): about 125
a process, in 4 to 16 processes (--units-per-process sets how many units each runs). --in-process runs
every unit in this process, sharing one set of plugin processes, still through etcd;
--store memory does so without etcd. A config with kinds (kinds.<application>.count)
runs that many units of each kind, each with its kind's profile, SANs and leader
eligibility (configs/octavia-up.yaml: Octavia's controllers and amphorae); a
client-only unit then dials and a server-only one serves in the proof.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg, err := loadConfig(cmd, f.config)
			if err != nil {
				return err
			}
			if f.backend != "" {
				if _, builtIn := builtin.Backends[f.backend]; builtIn && !builtin.IsSigner(f.backend) {
					return fmt.Errorf("--backend %s: it keeps secrets and signs nothing; a group's backend makes keys and signs: %s, or a configured plugin",
						f.backend, strings.Join(builtin.Signers(), ", "))
				}
				if err := cfg.UseBackend(f.backend, builtin.Names()); err != nil {
					return fmt.Errorf("--backend %s: %w", f.backend, err)
				}
			}
			if f.store != "" {
				cfg.Relation.Store = f.store
				if err := cfg.Validate(builtin.Names()); err != nil {
					return fmt.Errorf("--store %s: %w", f.store, err)
				}
			}
			if n := up.KindCount(cfg); n > 0 && cmd.Flags().Changed("units") {
				return fmt.Errorf("--units %d: the config's kinds count the group's units (%d); leave --units out or the counts", f.units, n)
			}
			dir, err := filepath.Abs(f.dir)
			if err != nil {
				return err
			}
			configFile := f.config
			if configFile != "" {
				if configFile, err = filepath.Abs(configFile); err != nil {
					return err
				}
			}
			// The agents' logs (DIR/logs) say what each did, at info at least: at the
			// default warn they would be empty on a run that went well.
			level, _ := cmd.Flags().GetString("log-level")
			if hclog.LevelFromString(level) > hclog.Info {
				level = "info"
			}
			ctx, cancel := context.WithTimeout(ctx, f.timeout)
			defer cancel()
			return up.Run(ctx, up.Options{Config: cfg, ConfigFile: configFile, Units: f.units, Dir: dir,
				Parallel: f.parallel, Out: cmd.OutOrStdout(), Progress: cmd.ErrOrStderr(),
				Log: newLogger(cmd), LogLevel: level, InProcess: f.inProc, AllPairs: f.allPairs, UnitsPerProcess: f.perProc})
		},
	}
	cmd.Flags().IntVar(&f.units, "units", 3, "number of units in the group (a config with kinds counts them itself)")
	cmd.Flags().StringVar(&f.dir, "dir", "tlsrelay-up", "directory for the units' files, the backends' state, etcd's data and the agents' logs")
	cmd.Flags().StringVar(&f.config, "config", "", "deployment YAML (default: the embedded configs/tlsrelay.yaml)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up if the group has not converged by then")
	cmd.Flags().IntVar(&f.parallel, "parallel", 8, "concurrent handshakes while proving mutual TLS")
	cmd.Flags().StringVar(&f.backend, "backend", "", "one backend for both the csr and signer roles: "+strings.Join(builtin.Signers(), ", ")+", or any configured plugin")
	cmd.Flags().StringVar(&f.store, "store", "", "relation store: embedded (default; one agent process per unit), memory (one process), or etcd (relation.etcd of the config)")
	cmd.Flags().BoolVar(&f.inProc, "in-process", false, "run every unit in this process, sharing one set of plugin processes (the relation is still etcd)")
	cmd.Flags().IntVar(&f.perProc, "units-per-process", 0, "units each agent process runs, sharing its plugins (0: one each up to 4 units, then about 125 a process in 4 to 16 processes)")
	cmd.Flags().BoolVar(&f.allPairs, "all-pairs", false, "prove mutual TLS between every pair of units (n*(n-1) handshakes), not only ring neighbours")
	return cmd
}

// loadConfig loads the deployment and warns about what it ignores.
func loadConfig(cmd *cobra.Command, path string) (*config.Config, error) {
	cfg, err := config.Load(path, builtin.Names())
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		newLogger(cmd).Warn(w)
	}
	return cfg, nil
}

func newLogger(cmd *cobra.Command) hclog.Logger {
	level, _ := cmd.Flags().GetString("log-level")
	format, _ := cmd.Flags().GetString("log-format")
	return hclog.New(&hclog.LoggerOptions{
		Name:  "tlsrelay",
		Level: hclog.LevelFromString(level),
		// Log fields hold what units and plugins wrote: escaped before any terminal.
		Output:     termsafe.Writer(cmd.ErrOrStderr()),
		JSONFormat: format == "json",
	})
}
