package assemble

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// StoreOptions are what a relation store needs beside the config.
type StoreOptions struct {
	// OnWatchLag, if set, sees how late the etcd store's watch delivers its own writes.
	OnWatchLag func(time.Duration)
	// Owner: the caller is the agent whose state directory holds the embedded store. It
	// waits for another process that serves it meanwhile to stop, rather than depend on
	// it; a reader (status, revoke) reaches such a process as a client.
	Owner bool
}

// Store opens the relation store cfg names; close releases it (and stops an embedded
// etcd this call started).
func Store(cfg *config.Config, log hclog.Logger, o StoreOptions) (store relation.Store, close func(), err error) {
	switch cfg.Relation.Store {
	case config.StoreMemory:
		m := relation.NewMemory(protocol.Schema())
		return m, func() { m.Close() }, nil
	case config.StoreEmbedded:
		return embeddedStore(cfg, log, o)
	case config.StoreEtcd:
		s, err := openEtcd(cfg, log, o.OnWatchLag)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	return nil, nil, fmt.Errorf("relation.store: %q is not one of %v", cfg.Relation.Store, config.Stores)
}

func embeddedStore(cfg *config.Config, log hclog.Logger, o StoreOptions) (relation.Store, func(), error) {
	dir := filepath.Join(cfg.StateDir, "etcd")
	srv, err := embedded.Start(embedded.Options{Dir: dir, Wait: o.Owner})
	for deadline := time.Now().Add(2 * time.Second); !o.Owner && startingElsewhere(err) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond) // another process is starting it: its endpoint comes soon
		srv, err = embedded.Start(embedded.Options{Dir: dir})
	}
	if served, ok := errors.AsType[*embedded.ServedError](err); ok && served.Endpoint != "" {
		// Another process (a running agent, `up`) serves it: reach it as a client.
		s, err := etcd.Open(etcd.Options{Endpoints: []string{served.Endpoint}, Relation: cfg.Relation.Name, Schema: protocol.Schema(),
			LeaseTTL: cfg.Relation.Etcd.LeaseTTL, Log: log, OnWatchLag: o.OnWatchLag})
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", served, err)
		}
		return s, func() { s.Close() }, nil
	}
	if err != nil {
		return nil, nil, err
	}
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint()}, Relation: cfg.Relation.Name, Schema: protocol.Schema(),
		LeaseTTL: cfg.Relation.Etcd.LeaseTTL, Log: log, OnWatchLag: o.OnWatchLag})
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return s, func() { s.Close(); srv.Close() }, nil
}

// startingElsewhere: err says another process is starting the embedded store.
func startingElsewhere(err error) bool {
	served, ok := errors.AsType[*embedded.ServedError](err)
	return ok && served.Endpoint == ""
}

// Etcd opens the etcd cluster cfg.Relation.Etcd names: its endpoints, TLS, user and
// password (from password_file when set).
func Etcd(cfg *config.Config, log hclog.Logger) (*etcd.Store, error) {
	return openEtcd(cfg, log, nil)
}

func openEtcd(cfg *config.Config, log hclog.Logger, onLag func(time.Duration)) (*etcd.Store, error) {
	e := cfg.Relation.Etcd
	opts := etcd.Options{Endpoints: e.Endpoints, Username: e.Username, Password: e.Password,
		Relation: cfg.Relation.Name, Schema: protocol.Schema(), LeaseTTL: e.LeaseTTL, Log: log, OnWatchLag: onLag}
	if e.PasswordFile != "" {
		data, err := safedir.ReadSecret(e.PasswordFile)
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
