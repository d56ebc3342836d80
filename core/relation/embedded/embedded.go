// Package embedded runs a real single-member etcd inside the tlsrelay process
// (go.etcd.io/etcd/server/v3/embed), on loopback only, with its data in a directory of
// the caller's. It is the relation store of one host: `tlsrelay up` starts it and hands
// its endpoint to every unit's agent, the same topology as units on many hosts.
//
// One process serves a data directory at a time. While it does, it holds a lock in the
// directory and writes its endpoint there, so that another process (`tlsrelay status`
// beside a running agent) is told where to reach it (ErrServed) instead of waiting on
// etcd's own locks.
package embedded

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is a running embedded etcd member.
type Server struct {
	etcd     *embed.Etcd
	endpoint string
	dir      string
	lock     *os.File
}

// ServedError is Start's error when another process serves the directory: Endpoint is
// where it serves, "" while it is still starting.
type ServedError struct {
	Dir, Endpoint string
}

func (e *ServedError) Error() string {
	if e.Endpoint == "" {
		return fmt.Sprintf("embedded etcd in %s: another process is starting it; try again in a moment", e.Dir)
	}
	return fmt.Sprintf("embedded etcd in %s: served by another process at %s", e.Dir, e.Endpoint)
}

// The files of a served directory, beside etcd's own.
const (
	lockFile     = "serving.lock"
	endpointFile = "serving.endpoint"
)

// Served returns where another process serves dir, or ok false if none does.
func Served(dir string) (endpoint string, ok bool) {
	var served *ServedError
	f, err := lock(dir)
	if f != nil {
		f.Close()
	}
	if errors.As(err, &served) {
		return served.Endpoint, true
	}
	return "", false
}

// lock takes the directory's serving lock without waiting; a *ServedError if another
// process holds it.
func lock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(filepath.Join(dir, endpointFile))
			return nil, &ServedError{Dir: dir, Endpoint: strings.TrimSpace(string(b))}
		}
		return nil, fmt.Errorf("embedded etcd: lock %s: %w", dir, err)
	}
	return f, nil
}

// Options configure Start.
type Options struct {
	// Dir holds the member's data (created 0700). A second Start on the same Dir keeps
	// the relation.
	Dir string
	// ClientURL is where clients connect; default http://127.0.0.1:0 (a free port).
	ClientURL string
	// StartTimeout bounds the wait for the member to be ready (default 30s), and for
	// Dir to be free when Wait.
	StartTimeout time.Duration
	// QuotaBytes is the backend's quota (default 2 GiB).
	QuotaBytes int64
	// Wait: when another process serves Dir or is starting to, wait until it stops
	// (the owner of Dir, an agent, outwaits a `status` that read it meanwhile) rather
	// than return a ServedError.
	Wait bool
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
	held, err := lock(opts.Dir)
	for deadline := time.Now().Add(opts.StartTimeout); opts.Wait && err != nil && time.Now().Before(deadline); {
		if _, served := errors.AsType[*ServedError](err); !served {
			break
		}
		time.Sleep(100 * time.Millisecond)
		held, err = lock(opts.Dir)
	}
	if err != nil {
		return nil, err
	}
	srv, err := start(opts)
	if err != nil {
		held.Close()
		return nil, err
	}
	srv.lock = held
	// Written once the member serves, removed as it stops: an outsider reads it only
	// while the lock is held.
	if err := os.WriteFile(filepath.Join(opts.Dir, endpointFile), []byte(srv.endpoint+"\n"), 0o600); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	return srv, nil
}

func start(opts Options) (*Server, error) {
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
	if opts.QuotaBytes > 0 {
		cfg.QuotaBackendBytes = opts.QuotaBytes
	}
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
	os.Remove(filepath.Join(s.dir, endpointFile))
	s.lock.Close() // and its lock with it
}
