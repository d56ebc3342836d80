package etcd

import (
	"context"
	"errors"
	"sync"
	"time"

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

	mu    sync.Mutex // never held across a call to etcd
	token string
	asked bool          // authenticated once: token holds the answer (empty: auth is off)
	busy  chan struct{} // closed when the Authenticate in flight ends; nil when none
}

// authenticateTimeout bounds one Authenticate: a stream's context lives as long as the
// stream, and every call of the client waits for the token it brings.
const authenticateTimeout = 10 * time.Second

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
// used. One Authenticate runs at a time; callers that find one in flight wait for it
// (or for their own context) without holding the lock, so a slow etcd never blocks
// calls that already hold a good token. With auth off on the server, the token stays
// empty.
func (a *passwordAuth) renew(ctx context.Context, cc *grpc.ClientConn, stale string) error {
	for {
		a.mu.Lock()
		if a.asked && a.token != stale {
			a.mu.Unlock()
			return nil
		}
		if busy := a.busy; busy != nil {
			a.mu.Unlock()
			select {
			case <-busy:
				continue // look again: it may have brought a token
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		done := make(chan struct{})
		a.busy = done
		a.mu.Unlock()

		token, err := a.authenticate(ctx, cc)
		a.mu.Lock()
		if err == nil {
			a.token, a.asked = token, true
		}
		a.busy = nil
		close(done)
		a.mu.Unlock()
		return err
	}
}

// authenticate asks etcd for a token ("" when auth is off).
func (a *passwordAuth) authenticate(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, authenticateTimeout)
	defer cancel()
	resp, err := pb.NewAuthClient(cc).Authenticate(ctx, &pb.AuthenticateRequest{Name: a.user, Password: a.password})
	if errors.Is(rpctypes.Error(err), rpctypes.ErrAuthNotEnabled) {
		return "", nil
	}
	if err != nil {
		return "", rpctypes.Error(err)
	}
	return resp.Token, nil
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
