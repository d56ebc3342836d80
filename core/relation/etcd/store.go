// Package etcd is the relation on an etcd cluster, for units on many hosts (and, through
// an embedded single-member etcd, for one host). Presence is a lease, leadership is the
// `elected` key created under the leader's lease, each bag field and each leader-data key is its own key, changes
// arrive by watch, and writes that could race are transactions on revisions:
//
//   - a unit's bag is bound to its lease, so a unit that dies departs after the TTL;
//   - leader data is written only while the `elected` key the writer created still stands;
//   - a certificate is published only while the unit's bag still holds the CSR it was
//     signed for (relation.Guard).
//
// A unit that does not lead reads and watches O(1) keys; the leader reads the relation
// once and follows the watch.
package etcd

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// DefaultLeaseTTL is how long a unit that stops renewing its lease stays joined.
const DefaultLeaseTTL = 10 * time.Second

// Options say how to reach etcd and which relation to use.
type Options struct {
	Endpoints []string
	// TLS, when set, secures the connection (see TLSConfig).
	TLS *tls.Config
	// Username and Password authenticate to etcd's RBAC.
	Username, Password string
	// Relation names the relation; its keys live under /tlsrelay/<Relation>/.
	Relation string
	// Schema says which keys matter to the store (protocol.Schema).
	Schema relation.Schema
	// LeaseTTL is the presence lease (default DefaultLeaseTTL; whole seconds).
	LeaseTTL    time.Duration
	DialTimeout time.Duration
	Log         hclog.Logger
	// OnWatchLag, if set, sees how long each of a member's writes took to come back
	// through its watch: the relation's watch lag.
	OnWatchLag func(time.Duration)
}

// Store is a relation on etcd.
type Store struct {
	client *clientv3.Client
	layout layout
	ttl    int
	log    hclog.Logger
	stats  Stats
	onLag  func(time.Duration)
	group  group
	closed atomic.Bool // Close was called: its members' timers end quietly
}

var _ relation.Store = (*Store)(nil)

// Open connects to etcd. The connection is made lazily; the first call that needs it waits
// for it (bounded by its context).
func Open(opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, fmt.Errorf("relation.etcd.endpoints: no etcd endpoint configured")
	}
	if opts.Relation == "" {
		return nil, fmt.Errorf("relation.name: must be set")
	}
	if len(opts.Schema.GroupKeys) == 0 {
		return nil, fmt.Errorf("relation %s: no schema given (protocol.Schema)", opts.Relation)
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	dialOptions := []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
		MinConnectTimeout: 2 * time.Second,
	})}
	if opts.Username != "" {
		auth := &passwordAuth{user: opts.Username, password: opts.Password}
		dialOptions = append(dialOptions, auth.dialOptions()...)
	}
	dialOptions = append(dialOptions, requireLeader{endpoints: len(opts.Endpoints)}.dialOptions()...)
	dialOptions = append(dialOptions, keepaliveWatch{answerWithin: keepaliveAnswerWithin(opts.LeaseTTL)}.dialOptions()...)
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		TLS:         opts.TLS,
		DialTimeout: opts.DialTimeout,
		// gRPC pings an idle connection after DialKeepAliveTime (10s at the least), and
		// makes the timeout the socket's TCP_USER_TIMEOUT: a lease keepalive sent to a
		// member that went away closes the connection that long after, and the next one
		// goes to a member that answers. The lease must outlive that (see deadLinkTimeout).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: deadLinkTimeout(opts.LeaseTTL),
		Logger:               zap.NewNop(),
		// gRPC's reconnect backoff grows to two minutes; a unit should be back within
		// seconds of etcd. The user and password go through passwordAuth.
		DialOptions: dialOptions,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", opts.Endpoints, err)
	}
	ttl := max(1, int(opts.LeaseTTL.Round(time.Second)/time.Second))
	return &Store{client: client, layout: newLayout(opts.Relation, opts.Schema), ttl: ttl, log: opts.Log, onLag: opts.OnWatchLag}, nil
}

// deadLinkTimeout is how long a unit's data may go unacknowledged by the etcd member it
// talks to before the connection is closed and another member used. A keepalive goes out
// a third of the TTL after the last was answered, so a lease lives through the loss of
// that member while TTL/3 + this (+ a reconnect, + an etcd election if that member led)
// < 2/3 TTL: docs/SECURITY.md advises 10s or more.
func deadLinkTimeout(ttl time.Duration) time.Duration {
	return min(max(ttl/5, time.Second), 5*time.Second)
}

// Client is the store's etcd client (for bootstrap and tests).
func (s *Store) Client() *clientv3.Client { return s.client }

// Stats reports what the store's members and observers have read from etcd.
func (s *Store) Stats() *Stats { return &s.stats }

// ReadCounts implements relation.ReadCounter.
func (s *Store) ReadCounts() relation.ReadCounts { return s.stats.counts() }

// Close closes the connection.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.group.mu.Lock()
	f := s.group.follower
	s.group.follower, s.group.members = nil, nil
	s.group.mu.Unlock()
	if f != nil {
		f.stop()
	}
	return s.client.Close()
}

// Request implements relation.Store. With RBAC on, it needs credentials that may write
// requests/ (root's): units' roles may not.
func (s *Store) Request(ctx context.Context, name, value string) error {
	var err error
	if value == "" {
		_, err = s.client.Delete(ctx, s.layout.request(name))
	} else {
		_, err = s.client.Put(ctx, s.layout.request(name), value)
	}
	if err != nil {
		return fmt.Errorf("relation request %s: %w", name, err)
	}
	return nil
}

// SetAway implements relation.Store: the note lands only while the unit's name is not
// held by a lease.
func (s *Store) SetAway(ctx context.Context, unit, note string) error {
	op := clientv3.OpDelete(s.layout.away(unit))
	if note != "" {
		op = clientv3.OpPut(s.layout.away(unit), note)
	}
	resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(s.layout.member(unit)), "=", 0)).Then(op).Commit()
	if err != nil {
		return fmt.Errorf("note for %s: %w", unit, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("note for %s: the unit is joined: %w", unit, relation.ErrJoined)
	}
	return nil
}

// Observe implements relation.Store: it follows the whole relation.
func (s *Store) Observe(ctx context.Context) (relation.Observer, error) {
	o := &observer{}
	o.changed = make(chan struct{})
	o.f = startFollower(s.client, s.layout, s.layout.wideScope(), o.notify, nil, s.log, &s.stats, nil)
	if err := o.f.waitReady(ctx); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

type observer struct {
	f *follower
	notifier
}

func (o *observer) Snapshot(ctx context.Context) (relation.Snapshot, error) {
	changed := o.current()
	if err := o.f.waitReady(ctx); err != nil {
		return relation.Snapshot{}, err
	}
	snap := o.f.snapshot()
	snap.Changed = changed
	return snap, nil
}

func (o *observer) Close() error {
	o.f.stop()
	return nil
}

// TLSConfig builds the client TLS configuration from PEM files: the CA that signed
// etcd's server certificate, and optionally a client certificate and key.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	info := transport.TLSInfo{TrustedCAFile: caFile, CertFile: certFile, KeyFile: keyFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("relation.etcd.tls: %w", err)
	}
	return cfg, nil
}
