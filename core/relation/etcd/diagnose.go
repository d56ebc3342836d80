package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// explain adds to an error of etcd's not answering in time what its members say, so
// that an operator reads "etcd cluster has no leader (quorum lost?): 1 of 3 members
// answer" rather than "context deadline exceeded". Each member is asked for its status
// (which needs no quorum) at once, for a second at most. Other errors, and a cluster
// with a leader, leave err as it is. A full backend (NOSPACE) gets the remedy.
func explain(client *clientv3.Client, err error) error {
	if err != nil && strings.Contains(err.Error(), "database space exceeded") {
		return fmt.Errorf("%w: etcd's backend is full (its NOSPACE alarm is raised) and it refuses every write; "+
			"find the unit that filled it (tlsrelay status) and `tlsrelay etcd evict` it, which gives the space back (`tlsrelay etcd reclaim` does that alone)", err)
	}
	if err == nil || !timedOut(err) {
		return err
	}
	endpoints := client.Endpoints()
	type answer struct {
		endpoint string
		leader   bool
		ok       bool
	}
	answers := make(chan answer, len(endpoints))
	for _, ep := range endpoints {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			resp, err := client.Status(ctx, ep)
			answers <- answer{endpoint: ep, ok: err == nil, leader: err == nil && resp.Leader != 0}
		}()
	}
	var answered []string
	leader := false
	for range endpoints {
		a := <-answers
		if a.ok {
			answered = append(answered, a.endpoint)
			leader = leader || a.leader
		}
	}
	switch {
	case len(answered) == 0:
		return fmt.Errorf("%w: no etcd member answers (%s)", err, strings.Join(endpoints, ", "))
	case !leader:
		return fmt.Errorf("%w: etcd cluster has no leader (quorum lost?): %d of %d members answer (%s)",
			err, len(answered), len(endpoints), strings.Join(answered, ", "))
	}
	return err
}

// timedOut: err says etcd did not answer (in time), not that it refused.
func timedOut(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if c := status.Code(err); c == codes.DeadlineExceeded || c == codes.Unavailable {
		return true
	}
	text := err.Error()
	return strings.Contains(text, "request timed out") || strings.Contains(text, "no leader")
}

// Alarms lists the alarms etcd's members raise (NOSPACE: the backend is full and every
// write is refused; CORRUPT), each with what to do.
func (s *Store) Alarms(ctx context.Context) ([]string, error) {
	resp, err := s.client.AlarmList(ctx)
	if err != nil {
		return nil, explain(s.client, err)
	}
	var alarms []string
	for _, a := range resp.Alarms {
		text := fmt.Sprintf("etcd member %x raises alarm %s", a.MemberID, a.Alarm)
		if a.Alarm.String() == "NOSPACE" {
			text += ": its backend is full and every write is refused; `tlsrelay etcd evict` the unit that filled it, then etcdctl compact, defrag and alarm disarm"
		}
		alarms = append(alarms, text)
	}
	return alarms, nil
}
