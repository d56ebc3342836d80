package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/internal/app/etcdaccess"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

func newEtcdCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "etcd", Short: "Administer the etcd cluster a relation lives on"}
	cmd.AddCommand(newEtcdBootstrapCommand(), newEtcdEvictCommand(), newEtcdReclaimCommand())
	return cmd
}

// rootFlags are the flags of a command that acts on etcd as its root user.
type rootFlags struct {
	config, user, passwordFile string
	timeout                    time.Duration
}

func (r *rootFlags) register(cmd *cobra.Command, timeout time.Duration) {
	f := cmd.Flags()
	f.StringVar(&r.config, "config", "", "deployment YAML naming the relation and its etcd cluster")
	f.StringVar(&r.user, "root-user", "root", "etcd user with the root role")
	f.StringVar(&r.passwordFile, "root-password-file", "", "file holding the root user's password (or TLSRELAY_ETCD_ROOT_PASSWORD)")
	f.DurationVar(&r.timeout, "timeout", timeout, "give up after this long")
}

// run does what act does to the etcd cluster the config names, as etcd's root user,
// printing each line of what it did (after prefix) even when it fails part way.
func (r *rootFlags) run(cmd *cobra.Command, prefix string, act func(context.Context, *config.Config, *clientv3.Client) ([]string, error)) error {
	cfg, err := loadConfig(cmd, r.config)
	if err != nil {
		return err
	}
	if cfg.Relation.Store != config.StoreEtcd {
		return fmt.Errorf("config %s: relation.store is %q: this acts on an external etcd cluster (relation.store: etcd)", cfg.Source, cfg.Relation.Store)
	}
	password, err := rootPassword(r.passwordFile)
	if err != nil {
		return err
	}
	root := *cfg
	root.Relation.Etcd.Username, root.Relation.Etcd.Password, root.Relation.Etcd.PasswordFile = r.user, password, ""
	store, err := assemble.Etcd(&root, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), r.timeout)
	defer cancel()
	did, err := act(ctx, cfg, store.Client())
	for _, d := range did {
		fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", prefix, d)
	}
	return err
}

func newEtcdReclaimCommand() *cobra.Command {
	var root rootFlags
	cmd := &cobra.Command{
		Use:   "reclaim --config FILE [--root-password-file FILE]",
		Short: "Give a full etcd its space back: compact, defragment each member, disarm NOSPACE",
		Long: `reclaim is etcd's recovery from a full backend (its NOSPACE alarm: every write refused),
authenticated as etcd's root user: it compacts the history to the current revision,
defragments each member the config names (each is blocked for a moment), and disarms
the NOSPACE alarm. Delete what filled etcd first, or the alarm is raised again at the
next write: evict the unit that flooded it (tlsrelay etcd evict, which runs reclaim
itself when etcd is full).

The root password comes from --root-password-file or TLSRELAY_ETCD_ROOT_PASSWORD.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return root.run(cmd, "", func(ctx context.Context, _ *config.Config, client *clientv3.Client) ([]string, error) {
				return etcd.Reclaim(ctx, client)
			})
		},
	}
	root.register(cmd, 2*time.Minute)
	return cmd
}

func newEtcdEvictCommand() *cobra.Command {
	var root rootFlags
	cmd := &cobra.Command{
		Use:   "evict UNIT --config FILE [--root-password-file FILE]",
		Short: "Take a compromised unit out of the relation for good, and revoke its certificates",
		Long: `evict removes a unit from the relation the config names, authenticated as etcd's root
user: it deletes the unit's etcd user and role (its credentials no longer open etcd, so
it cannot rejoin), revokes its lease, deletes its presence and bag, and marks it gone for
good, so the leader revokes every certificate issued to it at once. On a full etcd (a
flood, often by that unit) it gives the space back once the unit's keys are deleted (as
tlsrelay etcd reclaim does), then leaves the mark. Stop the unit's host or agent too;
to let it back, bootstrap it again: it gets a new password.

The root password comes from --root-password-file or TLSRELAY_ETCD_ROOT_PASSWORD.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return root.run(cmd, args[0]+": ", func(ctx context.Context, cfg *config.Config, client *clientv3.Client) ([]string, error) {
				return etcd.Evict(ctx, client, cfg.Relation.Name, protocol.Schema(), args[0], protocol.NoteGone)
			})
		},
	}
	root.register(cmd, 30*time.Second)
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
