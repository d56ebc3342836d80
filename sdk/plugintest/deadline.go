package plugintest

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// defaultCallTimeout bounds each call to the backend unless Options.CallTimeout says
// otherwise: room for a slow signer on a loaded machine, far below the run's deadline.
const defaultCallTimeout = 20 * time.Second

// callLimit bounds each call the kit makes to a backend it started, so that a call that
// hangs fails on its own, naming its method and the bound, rather than at the whole
// run's deadline with nothing naming it. Run sets it from Options once the backend has
// started (Configure, before that, has the default).
type callLimit struct{ nanos atomic.Int64 }

func (l *callLimit) set(d time.Duration) {
	if l != nil && d > 0 {
		l.nanos.Store(int64(d))
	}
}

func (l *callLimit) get() time.Duration {
	if d := time.Duration(l.nanos.Load()); d > 0 {
		return d
	}
	return defaultCallTimeout
}

// dialOptions bound every unary call of the connection to the plugin.
func (l *callLimit) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(l.unary)}
}

// queuedKey marks a call made beside others, or carrying several requests (its value,
// an int): a signer that signs one at a time answers the last after all of them, so the
// call's deadline is that many times the bound.
type queuedKey struct{}

func queued(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, queuedKey{}, n)
}

func (l *callLimit) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	limit := l.get()
	if n, ok := ctx.Value(queuedKey{}).(int); ok && n > 1 {
		limit *= time.Duration(n)
	}
	call, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := invoke(call, method, req, reply, cc, opts...)
	if err != nil && call.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		name := method[strings.LastIndex(method, "/")+1:]
		return status.Errorf(codes.DeadlineExceeded, "%s did not answer within %s (plugintest.Options.CallTimeout)", name, limit)
	}
	return err
}
