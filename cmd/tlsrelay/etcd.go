package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/internal/app/etcdaccess"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

func newEtcdCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "etcd", Short: "Administer the etcd cluster a relation lives on"}
	cmd.AddCommand(newEtcdBootstrapCommand(), newEtcdEvictCommand())
	return cmd
}

func newEtcdEvictCommand() *cobra.Command {
	var configFile, rootUser, rootPasswordFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "evict UNIT --config FILE [--root-password-file FILE]",
		Short: "Take a compromised unit out of the relation for good, and revoke its certificates",
		Long: `evict removes a unit from the relation the config names, authenticated as etcd's root
user: it deletes the unit's etcd user and role (its credentials no longer open etcd, so
it cannot rejoin), revokes its lease, deletes its presence and bag, and marks it gone for
good, so the leader revokes every certificate issued to it at once. Stop the unit's
host or agent too; to let it back, bootstrap it again with a new password.

The root password comes from --root-password-file or TLSRELAY_ETCD_ROOT_PASSWORD.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, configFile)
			if err != nil {
				return err
			}
			if cfg.Relation.Store != config.StoreEtcd {
				return fmt.Errorf("config %s: relation.store is %q: evict acts on an external etcd cluster (relation.store: etcd)", cfg.Source, cfg.Relation.Store)
			}
			password, err := rootPassword(rootPasswordFile)
			if err != nil {
				return err
			}
			root := *cfg
			root.Relation.Etcd.Username, root.Relation.Etcd.Password, root.Relation.Etcd.PasswordFile = rootUser, password, ""
			store, err := assemble.Etcd(&root, nil)
			if err != nil {
				return err
			}
			defer store.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			did, err := etcd.Evict(ctx, store.Client(), cfg.Relation.Name, protocol.Schema(), args[0], protocol.NoteGone)
			for _, d := range did {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], d)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "deployment YAML naming the relation and its etcd cluster")
	f.StringVar(&rootUser, "root-user", "root", "etcd user with the root role")
	f.StringVar(&rootPasswordFile, "root-password-file", "", "file holding the root user's password (or TLSRELAY_ETCD_ROOT_PASSWORD)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

func newEtcdBootstrapCommand() *cobra.Command {
	var configFile, rootPasswordFile string
	var opts etcdaccess.Options
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "bootstrap --config FILE --leader-eligible UNITS [--members UNITS] --credentials-dir DIR",
		Short: "Give each unit an etcd user that may write only its own bag; only leader-eligible units may lead",
		Long: `bootstrap sets up etcd's RBAC for the relation the config names (relation.name,
relation.etcd endpoints and TLS), authenticated as etcd's root user:

  - every unit gets the etcd user tlsrelay/<relation>/<unit>, which may write only its
    presence key and its own bag;
  - --leader-eligible units may also campaign and write leader data (the CA, the
    certificates); --members only ask, and read only their own keys;
  - each unit's password is kept in --credentials-dir as <unit with / as _>.password
    (0600): an existing file is reused, a missing one is made with 24 random bytes.
    Copy it to the unit's host and name it in relation.etcd.password_file.

The root password comes from --root-password-file or TLSRELAY_ETCD_ROOT_PASSWORD. On a
cluster whose authentication is off, --enable-auth creates the root user and turns it
on. Rerunning is safe: it adds new units and resets each role to what the flags say.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, configFile)
			if err != nil {
				return err
			}
			if cfg.Relation.Store != config.StoreEtcd {
				return fmt.Errorf("config %s: relation.store is %q: bootstrap sets up an external etcd cluster (relation.store: etcd)", cfg.Source, cfg.Relation.Store)
			}
			opts.Config, opts.Out = cfg, cmd.OutOrStdout()
			if opts.RootPassword, err = rootPassword(rootPasswordFile); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return etcdaccess.Bootstrap(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "deployment YAML naming the relation and its etcd cluster")
	f.StringSliceVar(&opts.LeaderEligible, "leader-eligible", nil, "units that may lead and sign (comma-separated)")
	f.StringSliceVar(&opts.Members, "members", nil, "units that only ask for certificates (comma-separated)")
	f.StringVar(&opts.CredentialsDir, "credentials-dir", "", "directory of the units' password files")
	f.StringVar(&opts.RootUser, "root-user", "root", "etcd user with the root role")
	f.StringVar(&rootPasswordFile, "root-password-file", "", "file holding the root user's password (or TLSRELAY_ETCD_ROOT_PASSWORD)")
	f.BoolVar(&opts.EnableAuth, "enable-auth", false, "create the root user and turn etcd authentication on if it is off")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

func rootPassword(file string) (string, error) {
	if file == "" {
		return os.Getenv("TLSRELAY_ETCD_ROOT_PASSWORD"), nil
	}
	data, err := safedir.ReadSecret(file)
	if err != nil {
		return "", fmt.Errorf("--root-password-file: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}
