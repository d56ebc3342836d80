package etcd

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reclaim gives a full etcd its space back, as etcd's maintenance guide does it: the
// history is compacted to the current revision, each member's backend defragmented (the
// file shrinks to what is live), and the NOSPACE alarm disarmed, so that etcd takes
// writes again. It says what it did; the client must be root. Delete what filled etcd
// first (Evict does), or the alarm is raised again at the next write. Each member is
// blocked while it is defragmented (a moment for tlsrelay's few megabytes).
func Reclaim(ctx context.Context, client *clientv3.Client) ([]string, error) {
	var did []string
	resp, err := client.Get(ctx, "tlsrelay-reclaim", clientv3.WithCountOnly())
	if err != nil {
		return did, fmt.Errorf("reclaim: read the current revision: %w", err)
	}
	rev := resp.Header.Revision
	if _, err := client.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return did, fmt.Errorf("reclaim: compact to revision %d: %w", rev, err)
	}
	did = append(did, fmt.Sprintf("compacted etcd's history to revision %d", rev))
	for _, ep := range client.Endpoints() {
		before, err := client.Status(ctx, ep)
		if err != nil {
			return did, fmt.Errorf("reclaim: status of %s: %w", ep, err)
		}
		if _, err := client.Defragment(ctx, ep); err != nil {
			return did, fmt.Errorf("reclaim: defragment %s: %w", ep, err)
		}
		after, err := client.Status(ctx, ep)
		if err != nil {
			return did, fmt.Errorf("reclaim: status of %s: %w", ep, err)
		}
		did = append(did, fmt.Sprintf("defragmented %s: %d bytes, was %d", ep, after.DbSize, before.DbSize))
	}
	alarms, err := client.AlarmList(ctx)
	if err != nil {
		return did, fmt.Errorf("reclaim: list alarms: %w", err)
	}
	for _, a := range alarms.Alarms {
		if a.Alarm != pb.AlarmType_NOSPACE {
			continue
		}
		if _, err := client.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			return did, fmt.Errorf("reclaim: disarm member %x's NOSPACE alarm: %w", a.MemberID, err)
		}
		did = append(did, fmt.Sprintf("disarmed member %x's NOSPACE alarm", a.MemberID))
	}
	return did, nil
}
