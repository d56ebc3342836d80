// Package unit runs one unit of a deployment, as `tlsrelay agent` does on each host:
// it opens the configured relation store, joins the relation, runs the agent until its
// context ends, then leaves (the lease revoked, the leadership passed on) and stops its
// plugins.
package unit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/agent"
	"github.com/tlsrelay/tlsrelay/core/backend"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
)

// Options configure Run.
type Options struct {
	Config *config.Config
	Log    hclog.Logger
	// Self is the tlsrelay binary that serves built-in backends (default: this one).
	Self string
	// OnStatus sees each change of the unit's status.
	OnStatus func(agent.Status)
	// Once: leave as soon as the unit holds a current certificate (agent.Options.Once).
	Once bool
}

// Run runs the unit until ctx ends, then leaves the relation. It returns nil after a
// clean leave, or the error that stopped the unit.
func Run(ctx context.Context, opts Options) error {
	cfg, log := opts.Config, opts.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	sealKey, err := caseal.LoadKey(cfg.CASeal.KeyFile)
	if err != nil {
		return err
	}
	pol, err := cfg.SigningPolicy()
	if err != nil {
		return err
	}
	store, closeStore, err := OpenStore(cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()
	member, err := join(ctx, store, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	host, err := backend.New(backend.Options{Self: opts.Self, Plugins: cfg.Plugins, Roles: cfg.Roles,
		StateDir: cfg.StateDir, Logger: log.Named(cfg.Unit)})
	if err != nil {
		return err
	}
	defer host.Close()
	a, err := agent.New(agent.Options{
		Member: member, Backends: host, Certificate: cfg.Certificate, Dir: cfg.Certificate.Output.Dir,
		Host: config.LocalHost(), Log: log, OnStatus: opts.OnStatus,
		Secrets: cfg.Secrets, SecretsRefresh: cfg.SecretsRefresh,
		Relation: cfg.Relation.Name, SealKey: sealKey, CARef: cfg.CA.Ref, Policy: pol, Once: opts.Once,
		SignerName: cfg.Roles.Signer, CARotateBefore: cfg.CA.RotateBefore,
	})
	if err != nil {
		return err
	}
	runErr := a.Run(ctx)
	leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := member.Leave(leaveCtx); err != nil {
		log.Warn("leaving the relation", "error", err)
	}
	return runErr
}

// join joins the relation, retrying while etcd cannot be reached; a name held by another
// live agent stops the unit at once.
func join(ctx context.Context, store relation.Store, cfg *config.Config, log hclog.Logger) (relation.Member, error) {
	backoff := 200 * time.Millisecond
	for {
		m, err := store.Join(ctx, cfg.Unit, relation.JoinOptions{LeaderEligible: cfg.Relation.LeaderEligible})
		if err == nil {
			log.Info("joined the relation", "relation", cfg.Relation.Name, "store", cfg.Relation.Store, "leader_eligible", cfg.Relation.LeaderEligible)
			return m, nil
		}
		if errors.Is(err, etcd.ErrDuplicate) || ctx.Err() != nil || cfg.Relation.Store == config.StoreMemory {
			return nil, err
		}
		log.Warn("cannot join the relation yet; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// OpenStore opens the relation store cfg names; close releases it (and stops an embedded
// etcd).
func OpenStore(cfg *config.Config, log hclog.Logger) (store relation.Store, close func(), err error) {
	switch cfg.Relation.Store {
	case config.StoreMemory:
		m := relation.NewMemory()
		return m, func() { m.Close() }, nil
	case config.StoreEmbedded:
		srv, err := embedded.Start(embedded.Options{Dir: filepath.Join(cfg.StateDir, "etcd")})
		if err != nil {
			return nil, nil, err
		}
		s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint()}, Relation: cfg.Relation.Name,
			LeaseTTL: cfg.Relation.Etcd.LeaseTTL, Log: log})
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return s, func() { s.Close(); srv.Close() }, nil
	case config.StoreEtcd:
		s, err := OpenEtcd(cfg, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	return nil, nil, fmt.Errorf("relation.store: %q is not one of %v", cfg.Relation.Store, config.Stores)
}

// OpenEtcd opens the etcd cluster cfg.Relation.Etcd names.
func OpenEtcd(cfg *config.Config, log hclog.Logger) (*etcd.Store, error) {
	e := cfg.Relation.Etcd
	opts := etcd.Options{Endpoints: e.Endpoints, Username: e.Username, Password: e.Password,
		Relation: cfg.Relation.Name, LeaseTTL: e.LeaseTTL, Log: log}
	if e.PasswordFile != "" {
		data, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("relation.etcd.password_file: %w", err)
		}
		opts.Password = strings.TrimRight(string(data), "\r\n")
	}
	if e.TLS.CAFile != "" || e.TLS.CertFile != "" {
		tls, err := etcd.TLSConfig(e.TLS.CAFile, e.TLS.CertFile, e.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		opts.TLS = tls
	}
	return etcd.Open(opts)
}
