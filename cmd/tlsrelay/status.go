package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
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
	store, closeStore, err := assemble.Store(cfg, nil, assemble.StoreOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	return store, closeStore, cfg, nil
}

// outsider is what the commands that reach a relation from outside share: which
// relation (--config, --dir) and how long to wait (--timeout).
type outsider struct {
	config, dir string
	timeout     time.Duration
}

// flags adds --config, --dir and --timeout (default wait, saying what it bounds).
func (o *outsider) flags(cmd *cobra.Command, wait time.Duration, what string) {
	cmd.Flags().StringVar(&o.config, "config", "", "deployment YAML naming the relation (default: the embedded configs/tlsrelay.yaml)")
	cmd.Flags().StringVar(&o.dir, "dir", "", "the --dir of a 'tlsrelay up' (its embedded etcd)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", wait, "give up "+what+" after this long")
}

// run opens the relation and runs f on it within --timeout.
func (o *outsider) run(cmd *cobra.Command, f func(ctx context.Context, store relation.Store, cfg *config.Config) error) error {
	store, closeStore, cfg, err := openRelation(cmd, o.config, o.dir)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	return f(ctx, store, cfg)
}

// observeRelation follows the relation and reads it once; the caller closes the
// observer when done.
func observeRelation(ctx context.Context, store relation.Store) (relation.Observer, relation.Snapshot, error) {
	obs, err := store.Observe(ctx)
	if err != nil {
		return nil, relation.Snapshot{}, err
	}
	snap, err := obs.Snapshot(ctx)
	if err != nil {
		obs.Close()
		return nil, relation.Snapshot{}, err
	}
	return obs, snap, nil
}

func newStatusCommand() *cobra.Command {
	var from outsider
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--config FILE | --dir DIR] [--json]",
		Short: "Show the group: its leader, its CA, and each unit's state, serial, expiry and last error",
		Long: `status reads the relation the config names (relation.store etcd: the cluster; embedded:
the member's data in state_dir/etcd; while an agent or 'up' serves it, that process's
etcd) and prints what each unit last published. 'tlsrelay up --dir DIR' and after it,
--dir DIR reads that group's embedded etcd.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return from.run(cmd, func(ctx context.Context, store relation.Store, cfg *config.Config) error {
				obs, snap, err := observeRelation(ctx, store)
				if err != nil {
					return err
				}
				obs.Close()
				g := status.FromSnapshot(cfg.Relation.Name, snap)
				if es, ok := store.(*etcd.Store); ok {
					if g.Alarms, err = es.Alarms(ctx); err != nil {
						g.Alarms = []string{"cannot list etcd's alarms: " + err.Error()}
					}
					if h, err := es.DBHealth(ctx, cfg.Relation.Etcd.QuotaBytes); err == nil {
						h.Embedded = cfg.Relation.Store == config.StoreEmbedded
						g.Etcd = &h
					}
				}
				if asJSON {
					return g.WriteJSON(cmd.OutOrStdout())
				}
				return g.WriteTable(cmd.OutOrStdout())
			})
		},
	}
	from.flags(cmd, 10*time.Second, "reading the relation")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
