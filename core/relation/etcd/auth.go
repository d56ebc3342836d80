package etcd

import (
	"context"
	"errors"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
)

// passwordAuth keeps an etcd auth token for a user and password, in place of the
// client library's own. The library's sends the token it holds on the Authenticate call
// itself; an etcd 3.4 server (Debian's) checks that token and refuses a stale one, so
// after an etcd restart invalidated it, a long-running unit could never authenticate
// again. Here Authenticate never carries a token, a refused token is renewed once and
// the call retried, and a watch stream is opened with a fresh token (its token is
// fixed for the stream's life), as the library does.
type passwordAuth struct {
	user, password string

	mu    sync.Mutex
	token string
	asked bool // authenticated once: token holds the answer (empty: auth is off)
}

const authenticateMethod = "/etcdserverpb.Auth/Authenticate"

type noTokenKey struct{}

func (a *passwordAuth) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithPerRPCCredentials(a),
		grpc.WithChainUnaryInterceptor(a.unary),
		grpc.WithChainStreamInterceptor(a.stream),
	}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (a *passwordAuth) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ctx.Value(noTokenKey{}) != nil {
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == "" {
		return nil, nil
	}
	return map[string]string{rpctypes.TokenFieldNameGRPC: a.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: etcd takes tokens
// over plain connections too; whether to use TLS is the endpoint's choice.
func (a *passwordAuth) RequireTransportSecurity() bool { return false }

func (a *passwordAuth) current() (token string, asked bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token, a.asked
}

// renew authenticates again unless another call renewed the token since stale was
// used. With auth off on the server, the token stays empty.
func (a *passwordAuth) renew(ctx context.Context, cc *grpc.ClientConn, stale string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.asked && a.token != stale {
		return nil
	}
	resp, err := pb.NewAuthClient(cc).Authenticate(ctx, &pb.AuthenticateRequest{Name: a.user, Password: a.password})
	if errors.Is(rpctypes.Error(err), rpctypes.ErrAuthNotEnabled) {
		a.token, a.asked = "", true
		return nil
	}
	if err != nil {
		return rpctypes.Error(err)
	}
	a.token, a.asked = resp.Token, true
	return nil
}

func refusedToken(err error) bool {
	err = rpctypes.Error(err)
	return errors.Is(err, rpctypes.ErrInvalidAuthToken) || errors.Is(err, rpctypes.ErrAuthOldRevision) ||
		errors.Is(err, rpctypes.ErrUserEmpty)
}

func (a *passwordAuth) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == authenticateMethod {
		return invoker(context.WithValue(ctx, noTokenKey{}, true), method, req, reply, cc, opts...)
	}
	used, asked := a.current()
	if !asked {
		if err := a.renew(ctx, cc, ""); err != nil {
			return err
		}
		used, _ = a.current()
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil || !refusedToken(err) {
		return err
	}
	if rerr := a.renew(ctx, cc, used); rerr != nil {
		return rerr
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (a *passwordAuth) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	used, _ := a.current()
	if err := a.renew(ctx, cc, used); err != nil {
		return nil, err
	}
	return streamer(ctx, desc, cc, method, opts...)
}
