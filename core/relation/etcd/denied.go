package etcd

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// dropDenied takes out of the scope the keys this unit's etcd role may not read, and
// says so, and whether it took any. A role made by an older `etcd bootstrap` lacks the
// keys a newer version added (ca_chain): the unit goes on without them, as before, rather
// than read nothing at all.
func (f *follower) dropDenied(ctx context.Context) bool {
	var kept []string
	for _, k := range f.scope.keys {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := f.client.Get(rctx, k)
		cancel()
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			f.log.Warn("relation: this unit's etcd role may not read a key of the relation; going on without it (run `tlsrelay etcd bootstrap` again to grant it)", "key", k)
			continue
		}
		kept = append(kept, k)
	}
	dropped := len(kept) < len(f.scope.keys)
	f.scope.keys = kept
	return dropped
}
