package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/unit"
	"github.com/tlsrelay/tlsrelay/internal/app/status"
)

// openRelation opens the relation a config names, or the embedded etcd of an up --dir,
// as an outsider (status, ca rotate).
func openRelation(cmd *cobra.Command, configFile, dir string) (relation.Store, func(), *config.Config, error) {
	cfg, err := loadConfig(cmd, configFile)
	if err != nil {
		return nil, nil, nil, err
	}
	if dir != "" {
		cfg.Relation.Store, cfg.StateDir = config.StoreEmbedded, dir
	}
	if cfg.Relation.Store == config.StoreMemory {
		return nil, nil, nil, fmt.Errorf("relation.store memory lives inside one process: there is no relation to reach")
	}
	if cfg.Relation.Store == config.StoreEmbedded && dir == "" {
		dir = cfg.StateDir
	}
	if dir != "" {
		cfg.StateDir = filepath.Clean(dir) // up keeps etcd's data in DIR/etcd
	}
	store, closeStore, err := unit.OpenStore(cfg, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	return store, closeStore, cfg, nil
}

func newStatusCommand() *cobra.Command {
	var configFile, dir string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [--config FILE | --dir DIR] [--json]",
		Short: "Show the group: its leader, its CA, and each unit's state, serial, expiry and last error",
		Long: `status reads the relation the config names (relation.store etcd: the cluster; embedded:
the member's data in state_dir/etcd) and prints what each unit last published. After
'tlsrelay up --dir DIR', --dir DIR reads that group's embedded etcd.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, closeStore, cfg, err := openRelation(cmd, configFile, dir)
			if err != nil {
				return err
			}
			defer closeStore()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			obs, err := store.Observe(ctx)
			if err != nil {
				return err
			}
			defer obs.Close()
			snap, err := obs.Snapshot(ctx)
			if err != nil {
				return err
			}
			g := status.FromSnapshot(cfg.Relation.Name, snap)
			if asJSON {
				return g.WriteJSON(cmd.OutOrStdout())
			}
			return g.WriteTable(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "deployment YAML (default: the embedded configs/tlsrelay.yaml)")
	cmd.Flags().StringVar(&dir, "dir", "", "the --dir of a 'tlsrelay up' (reads its embedded etcd)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up reading the relation after this long")
	return cmd
}
