package verify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// server is one unit listening on 127.0.0.1 and demanding a client certificate.
type server struct {
	id *Identity
	ln net.Listener
	wg sync.WaitGroup
}

func listen(id *Identity) (*server, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{id.TLSCert},
		ClientCAs:    id.Roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", id.Name, err)
	}
	s := &server{id: id, ln: ln}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// serve completes each handshake and answers with the client's verified common name,
// so the dialler knows the server saw who it was.
func (s *server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			tc := conn.(*tls.Conn)
			if tc.Handshake() != nil {
				return
			}
			peer := tc.ConnectionState().PeerCertificates[0]
			fmt.Fprintf(tc, "%s\n", peer.Subject.CommonName)
		}()
	}
}

func (s *server) close() {
	s.ln.Close()
	s.wg.Wait()
}

// Pair is one handshake: ids[Client] dials ids[Server].
type Pair struct{ Client, Server int }

// AllPairs is every ordered pair of n units: n*(n-1) handshakes.
func AllPairs(n int) []Pair {
	pairs := make([]Pair, 0, n*(n-1))
	for c := range n {
		for s := range n {
			if c != s {
				pairs = append(pairs, Pair{c, s})
			}
		}
	}
	return pairs
}

// Ring is each unit dialling the next, the last the first: n handshakes in which every
// unit is once client and once server (none for one unit).
func Ring(n int) []Pair {
	if n < 2 {
		return nil
	}
	pairs := make([]Pair, n)
	for i := range n {
		pairs[i] = Pair{i, (i + 1) % n}
	}
	return pairs
}

// Sides is the pairs for a group whose units differ in profile (a client-only unit
// never serves, a server-only one never dials): with all, every client-capable unit
// dials every server-capable one; else in turn, so that each unit takes its sides at
// least once. A group of peers gets Ring or AllPairs.
func Sides(units []Unit, all bool) []Pair {
	var dialers, servers []int
	for i, u := range units {
		if u.CanDial() {
			dialers = append(dialers, i)
		}
		if u.CanServe() {
			servers = append(servers, i)
		}
	}
	if len(dialers) == len(units) && len(servers) == len(units) {
		if all {
			return AllPairs(len(units))
		}
		return Ring(len(units))
	}
	var pairs []Pair
	if all {
		for _, c := range dialers {
			for _, s := range servers {
				if c != s {
					pairs = append(pairs, Pair{c, s})
				}
			}
		}
		return pairs
	}
	if len(dialers) == 0 || len(servers) == 0 {
		return nil
	}
	for k := range max(len(dialers), len(servers)) {
		c, s := dialers[k%len(dialers)], servers[k%len(servers)]
		if c == s {
			s = servers[(k+1)%len(servers)]
		}
		if c != s {
			pairs = append(pairs, Pair{c, s})
		}
	}
	return pairs
}

// MutualTLS has the units of each pair handshake over TLS 1.3, each with its own
// certificate, each side verifying the other against its CA bundle and the server's
// unit DNS name. It returns the number of handshakes completed, len(pairs) when err is
// nil.
func MutualTLS(ctx context.Context, ids []*Identity, pairs []Pair, parallel int) (int, error) {
	servers := make([]*server, 0, len(ids))
	defer func() {
		for _, s := range servers {
			s.close()
		}
	}()
	for _, id := range ids {
		s, err := listen(id)
		if err != nil {
			return 0, err
		}
		servers = append(servers, s)
	}
	work := make(chan Pair)
	var (
		mu    sync.Mutex
		done  int
		errs  []error
		wg    sync.WaitGroup
		dials = max(parallel, 1)
	)
	for range dials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				err := handshake(ctx, ids[p.Client], servers[p.Server])
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					done++
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range pairs {
		work <- p
	}
	close(work)
	wg.Wait()
	return done, errors.Join(errs...)
}

func handshake(ctx context.Context, client *Identity, s *server) error {
	d := tls.Dialer{Config: &tls.Config{
		Certificates: []tls.Certificate{client.TLSCert},
		RootCAs:      client.Roots,
		ServerName:   protocol.UnitDNSName(s.id.Name),
		MinVersion:   tls.VersionTLS13,
	}}
	conn, err := d.DialContext(ctx, "tcp", s.ln.Addr().String())
	if err != nil {
		return fmt.Errorf("%s -> %s: %w", client.Name, s.id.Name, err)
	}
	defer conn.Close()
	seen, err := io.ReadAll(io.LimitReader(conn, 256))
	if err != nil {
		return fmt.Errorf("%s -> %s: %w", client.Name, s.id.Name, err)
	}
	if got := string(seen); got != client.Unit.commonName()+"\n" {
		return fmt.Errorf("%s -> %s: server saw client %q", client.Name, s.id.Name, got)
	}
	tc := conn.(*tls.Conn)
	if peer := tc.ConnectionState().PeerCertificates[0]; peer.Subject.CommonName != s.id.Unit.commonName() {
		return fmt.Errorf("%s -> %s: server presented %q", client.Name, s.id.Name, peer.Subject.CommonName)
	}
	return nil
}
