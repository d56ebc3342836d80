// Package embedded runs a real single-member etcd inside the tlsrelay process
// (go.etcd.io/etcd/server/v3/embed), on loopback only, with its data in a directory of
// the caller's. It is the relation store of one host: `tlsrelay up` starts it and hands
// its endpoint to every unit's agent, the same topology as units on many hosts.
package embedded

import (
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is a running embedded etcd member.
type Server struct {
	etcd     *embed.Etcd
	endpoint string
	dir      string
}

// Options configure Start.
type Options struct {
	// Dir holds the member's data (created 0700). A second Start on the same Dir keeps
	// the relation.
	Dir string
	// ClientURL is where clients connect; default http://127.0.0.1:0 (a free port).
	ClientURL string
	// StartTimeout bounds the wait for the member to be ready (default 30s).
	StartTimeout time.Duration
}

// Start starts the member and waits until it serves.
func Start(opts Options) (*Server, error) {
	if opts.ClientURL == "" {
		opts.ClientURL = "http://127.0.0.1:0"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: data directory: %w", err)
	}
	client, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client URL %q: %w", opts.ClientURL, err)
	}
	if h := client.Hostname(); h != "127.0.0.1" && h != "localhost" && h != "::1" {
		return nil, fmt.Errorf("embedded etcd: client URL %q: the embedded member listens on loopback only", opts.ClientURL)
	}
	peer, _ := url.Parse("http://127.0.0.1:0")

	cfg := embed.NewConfig()
	cfg.Name = "tlsrelay"
	cfg.Dir = opts.Dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd logs its own shutdown at error level ("mux: server closed"); only a failure
	// to start matters here, and Start returns that.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// A relation's history is small; keep an hour of it for watches that resume.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	// The embedded member serves one host's units: fsync stays on (a crash must not
	// lose a published certificate), but the backend is sized for a relation, not a cluster.
	cfg.QuotaBackendBytes = 2 << 30
	// Pre-vote: a member cut off and back does not force an election with the term it
	// raised meanwhile (leadership, and the units' leases with it, would flap).
	cfg.PreVote = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", opts.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", opts.Dir, err)
	case <-time.After(opts.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready within %s", opts.Dir, opts.StartTimeout)
	}
	endpoint := "http://" + e.Clients[0].Addr().String()
	return &Server{etcd: e, endpoint: endpoint, dir: opts.Dir}, nil
}

// Endpoint is the member's client URL, e.g. http://127.0.0.1:40123.
func (s *Server) Endpoint() string { return s.endpoint }

// Close stops the member; its data stays in Dir.
func (s *Server) Close() {
	s.etcd.Close()
}
