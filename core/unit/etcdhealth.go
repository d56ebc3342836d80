package unit

import (
	"context"
	"time"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
)

// etcdDBEvery is how often the leading unit reads etcd's database size and compaction
// for the metrics: they change slowly, and one unit reads them for the group. Whether
// this unit leads is looked at every leadCheck, so a new leader reports at once.
const (
	etcdDBEvery = time.Minute
	leadCheck   = 5 * time.Second
)

// reportEtcdDB keeps the tlsrelay_etcd_* gauges while this unit leads, until ctx ends.
func (u *Unit) reportEtcdDB(ctx context.Context, store *etcd.Store, cfg *config.Config) {
	t := time.NewTicker(leadCheck)
	defer t.Stop()
	var last time.Time // of the last read; zero while not leading
	for {
		a := u.agent.Load()
		switch leading := a != nil && a.Leading(); {
		case leading && time.Since(last) >= etcdDBEvery:
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			h, err := store.DBHealth(rctx, cfg.Relation.Etcd.QuotaBytes)
			cancel()
			last = time.Now()
			if err != nil {
				u.opts.Log.Debug("etcd's database health", "error", err)
				break
			}
			u.opts.Metrics.EtcdDB(cfg.Unit, true, h.DBSize, h.DBSizeInUse, h.QuotaBytes, h.Revision, h.CompactRevision)
		case !leading && !last.IsZero():
			last = time.Time{}
			u.opts.Metrics.EtcdDB(cfg.Unit, false, 0, 0, 0, 0, 0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
