package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/core/metrics"
	"github.com/tlsrelay/tlsrelay/core/unit"
)

func newAgentCommand() *cobra.Command {
	var configFile string
	var once bool
	var timeout time.Duration
	var metricsAddr string
	var units string
	var leave bool
	cmd := &cobra.Command{
		Use:   "agent --config FILE [--once [--timeout D] | --leave]",
		Short: "Run one unit until SIGTERM or SIGINT (the same command on each host makes a group)",
		Long: `agent runs the unit the config names (unit:) on its relation (relation.store: an
etcd cluster, the embedded etcd, or memory): it makes the unit's key and CSR, installs
the certificate the leader signs, signs for the group while it leads, and keeps the
files current. On SIGTERM or SIGINT it leaves the relation (its lease revoked, so the
leadership passes on at once), saying it will be back: its certificate is not revoked.
With --once it exits 0 as soon as the unit holds a current certificate (for cron jobs
and init containers), and 1 if it does not by --timeout; it leaves the same way.
--leave decommissions the unit instead of running it (its agent must be stopped): the
leader revokes every certificate issued to it at once (see 'tlsrelay revoke'). SIGHUP reads --config again: a config that does not load or
validate is refused (the error logged) and the running one kept; a good one restarts
the agent and its plugins (and rejoins the relation if the unit, relation or state_dir
changed). --metrics-addr serves Prometheus metrics on /metrics and the unit's health on
/healthz (200 while it holds an unexpired certificate, 503 otherwise).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, configFile)
			if err != nil {
				// Exit 2: restarting into the same file cannot mend it (a service manager
				// that restarts on failure would, every few seconds, for ever).
				return fault.Permanent(err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if leave {
				return leaveForGood(ctx, cmd, cfg, timeout)
			}
			if once {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			log := newLogger(cmd)
			if units != "" {
				specs, err := unit.ParseSpecs(units)
				if err != nil {
					return err
				}
				if once || metricsAddr != "" {
					return fmt.Errorf("--units runs several units for up: without --once or --metrics-addr")
				}
				return unit.RunMany(ctx, unit.ManyOptions{Config: cfg, Units: specs, Log: log})
			}
			opts := unit.Options{Config: cfg, Log: log, Once: once}
			if configFile != "" {
				opts.Reload = unit.ReloadOnSIGHUP(ctx, func() (*config.Config, error) { return loadConfig(cmd, configFile) }, log)
			}
			if metricsAddr != "" {
				opts.Metrics = metrics.New()
			}
			u := unit.New(opts)
			if metricsAddr != "" {
				srv, err := opts.Metrics.Listen(metricsAddr, u.Health)
				if err != nil {
					return err
				}
				defer srv.Close()
				log.Info("serving /metrics and /healthz", "addr", "http://"+srv.Addr())
			}
			err = u.Run(ctx)
			if err == nil && once && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: no current certificate within --timeout %s", cfg.Unit, timeout)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "deployment YAML (default: the embedded configs/tlsrelay.yaml)")
	cmd.Flags().BoolVar(&once, "once", false, "exit as soon as the unit holds a current certificate (cron, init containers)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "with --once or --leave: give up after this long")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve /metrics and /healthz on this host:port (off when empty)")
	cmd.Flags().BoolVar(&leave, "leave", false, "decommission the unit (its agent stopped): the leader revokes its certificates at once")
	cmd.MarkFlagsMutuallyExclusive("leave", "once")
	cmd.Flags().StringVar(&units, "units", "", "NAME=DIR,...: run these units in this process, sharing its plugins (up --units-per-process)")
	cmd.Flags().MarkHidden("units")
	return cmd
}

// leaveForGood is agent --leave: tlsrelay revoke, for the config's own unit.
func leaveForGood(ctx context.Context, cmd *cobra.Command, cfg *config.Config, timeout time.Duration) error {
	store, closeStore, err := assemble.Store(cfg, nil, assemble.StoreOptions{})
	if err != nil {
		return err
	}
	defer closeStore()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return retire(ctx, cmd, store, cfg.Unit)
}
