package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/unit"
)

func newAgentCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run one unit until SIGTERM or SIGINT (the same command on each host makes a group)",
		Long: `agent runs the unit the config names (unit:) on its relation (relation.store: an
etcd cluster, the embedded etcd, or memory): it makes the unit's key and CSR, installs
the certificate the leader signs, signs for the group while it leads, and keeps the
files current. On SIGTERM or SIGINT it leaves the relation (its lease revoked, so the
leadership passes on at once) and stops its plugins.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, configFile)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return unit.Run(ctx, unit.Options{Config: cfg, Log: newLogger(cmd)})
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "deployment YAML (default: the embedded configs/tlsrelay.yaml)")
	return cmd
}
