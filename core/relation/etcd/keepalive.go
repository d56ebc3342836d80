package etcd

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// keepaliveWatch ends a lease keepalive stream whose request goes unanswered for
// answerWithin. The client library opens a new stream half a second after one ends,
// on the next member the balancer picks; without the watch, a unit's keepalives stay
// with a member that has lost touch with the raft leader but not with its clients: such
// a member holds each keepalive until its own request timeout (some 7 s) and ends its
// streams only after three election timeouts, by which time a short lease has run out.
type keepaliveWatch struct{ answerWithin time.Duration }

const keepaliveMethod = "/etcdserverpb.Lease/LeaseKeepAlive"

// answerWithin is how long a keepalive may go unanswered on one stream: a sixth of the
// TTL leaves the lease several tries on other members, and a healthy member answers in
// milliseconds.
func keepaliveAnswerWithin(ttl time.Duration) time.Duration { return max(ttl/6, time.Second) }

func (w keepaliveWatch) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainStreamInterceptor(w.stream)}
}

func (w keepaliveWatch) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, open grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method != keepaliveMethod {
		return open(ctx, desc, cc, method, opts...)
	}
	ctx, cancel := context.WithCancel(ctx)
	s, err := open(ctx, desc, cc, method, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	ws := &watchedStream{ClientStream: s, cancel: cancel}
	go ws.watch(ctx, w.answerWithin)
	return ws, nil
}

// watchedStream is a keepalive stream that knows since when a request waits for its
// answer.
type watchedStream struct {
	grpc.ClientStream
	cancel  context.CancelFunc
	mu      sync.Mutex
	waiting time.Time // when the oldest unanswered request went out; zero: none
}

func (s *watchedStream) SendMsg(m any) error {
	s.mu.Lock()
	if s.waiting.IsZero() {
		s.waiting = time.Now()
	}
	s.mu.Unlock()
	return s.ClientStream.SendMsg(m)
}

func (s *watchedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.mu.Lock()
	s.waiting = time.Time{}
	s.mu.Unlock()
	if err != nil {
		s.cancel() // the stream is over: so is its watch
	}
	return err
}

// watch ends the stream once a request has waited longer than within.
func (s *watchedStream) watch(ctx context.Context, within time.Duration) {
	tick := time.NewTicker(within / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.mu.Lock()
			late := !s.waiting.IsZero() && time.Since(s.waiting) > within
			s.mu.Unlock()
			if late {
				s.cancel()
				return
			}
		}
	}
}
