package etcd

import (
	"context"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// requireLeader makes every key-value and lease request say that it needs a member with
// a raft leader (etcd's "hasleader" metadata, which clientv3.WithRequireLeader gives a
// watch). A member cut off from its peers but not from its clients then refuses at
// once, "etcdserver: no leader", where it would hold a write until the proposal times
// out (7 s), a linearizable read until its read index does (5 s), and a lease
// keepalive until the lease is lost. The refusal comes before the request is handled,
// so even a write is sent again at once, to the next member the balancer picks, up to
// once for each endpoint; a keepalive stream the member ends when it loses its leader
// is opened again by the client, on another member.
type requireLeader struct{ endpoints int }

func (r requireLeader) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(r.unary), grpc.WithChainStreamInterceptor(r.stream)}
}

// needsLeader: the services whose requests go through raft (or read what it
// committed), Auth among them: a unit's Authenticate, when its client connects, is a
// linearizable read and a proposal. Maintenance (Status, alarms) and Cluster are left
// alone: a member's own status is what tells an operator it has no leader (explain).
func needsLeader(method string) bool {
	for _, service := range []string{"/etcdserverpb.KV/", "/etcdserverpb.Lease/", "/etcdserverpb.Auth/"} {
		if strings.HasPrefix(method, service) {
			return true
		}
	}
	return false
}

func withHasLeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)
}

func (r requireLeader) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !needsLeader(method) {
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	ctx = withHasLeader(ctx)
	var err error
	for range max(r.endpoints, 1) {
		attempt, cancel := context.WithTimeout(ctx, attemptTimeout)
		err = invoke(attempt, method, req, reply, cc, opts...)
		timedOut := err != nil && attempt.Err() == context.DeadlineExceeded && ctx.Err() == nil
		cancel()
		if timedOut {
			return status.Errorf(codes.DeadlineExceeded, "etcd did not answer %s within %s (a member cut off from its peers?)", method, attemptTimeout)
		}
		if !isNoLeader(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// attemptTimeout bounds one attempt of a request that needs a leader, whatever its
// caller's context allows. A member that took the request while it still had a leader
// and was then cut from its peers can hold it past its own proposal timeout (7 s) and
// never answer: a unit publishing its CSR so waited for ever (TestChaos). Past the bound
// the caller gets an error and tries again from what it then reads; a write that timed
// out is not sent again here, as it may have been applied.
const attemptTimeout = 15 * time.Second

func (r requireLeader) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, open grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if needsLeader(method) {
		ctx = withHasLeader(ctx)
	}
	return open(ctx, desc, cc, method, opts...)
}

// isNoLeader: err is a member's refusal for want of a leader (rpctypes.ErrGRPCNoLeader).
func isNoLeader(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable && s.Message() == rpctypes.ErrNoLeader.Error()
}
