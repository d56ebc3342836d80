package etcd

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DBHealth is etcd's own account of its database, as an operator watches it: its size
// against the quota (a full backend refuses every write), and whether old revisions are
// compacted (etcd keeps every revision until something compacts it; an external
// cluster does so only when run with --auto-compaction-retention).
type DBHealth struct {
	Endpoint    string `json:"endpoint"`
	DBSize      int64  `json:"db_size_bytes"`        // the database file
	DBSizeInUse int64  `json:"db_size_in_use_bytes"` // live data (defrag frees the rest)
	QuotaBytes  int64  `json:"quota_bytes"`          // relation.etcd.quota_bytes: the cluster's --quota-backend-bytes
	Revision    int64  `json:"revision"`
	// CompactRevision: revisions before it are compacted; 0, never compacted.
	CompactRevision int64 `json:"compact_revision"`
	// Embedded: tlsrelay's own etcd, which compacts itself (set by the caller).
	Embedded bool `json:"embedded,omitempty"`
}

// DBHealth asks the first member that answers for its database's size, and finds how
// far history is compacted. quota is what the operator says the cluster runs with.
func (s *Store) DBHealth(ctx context.Context, quota int64) (DBHealth, error) {
	var errs []error
	for _, ep := range s.client.Endpoints() {
		st, err := s.client.Status(ctx, ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h := DBHealth{Endpoint: ep, DBSize: st.DbSize, DBSizeInUse: st.DbSizeInUse, QuotaBytes: quota, Revision: st.Header.Revision}
		if h.CompactRevision, err = s.compactRevision(ctx); err != nil {
			return h, err
		}
		return h, nil
	}
	return DBHealth{}, explain(s.client, fmt.Errorf("etcd status: %w", errors.Join(errs...)))
}

// probeKey is read at revision 1: a key no one writes, so a watch from there delivers
// nothing but, on a compacted store, the revision it is compacted to.
const probeKey = "\x00tlsrelay-compaction-probe"

func (s *Store) compactRevision(ctx context.Context) (int64, error) {
	_, err := s.client.Get(ctx, probeKey, clientv3.WithRev(1))
	if err == nil {
		return 0, nil // revision 1 is still there: never compacted
	}
	if !errors.Is(err, rpctypes.ErrCompacted) {
		return 0, fmt.Errorf("etcd history: %w", explain(s.client, err))
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range s.client.Watch(wctx, probeKey, clientv3.WithRev(1)) {
		if resp.CompactRevision > 0 {
			return resp.CompactRevision, nil
		}
		if err := resp.Err(); err != nil {
			return 0, fmt.Errorf("etcd history: %w", err)
		}
	}
	return 0, fmt.Errorf("etcd history: %w", ctx.Err())
}
