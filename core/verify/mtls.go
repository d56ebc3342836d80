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

// MutualTLS makes every unit dial every other unit over TLS 1.3 with its own certificate,
// each side verifying the other against its CA bundle and the server's unit DNS name.
// It returns the number of handshakes completed, which is n*(n-1) when err is nil.
func MutualTLS(ctx context.Context, ids []*Identity, parallel int) (int, error) {
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
	type pair struct{ client, server int }
	pairs := make(chan pair)
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
			for p := range pairs {
				err := handshake(ctx, ids[p.client], servers[p.server])
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
	for c := range ids {
		for s := range ids {
			if c != s {
				pairs <- pair{c, s}
			}
		}
	}
	close(pairs)
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
	if got := string(seen); got != client.Name+"\n" {
		return fmt.Errorf("%s -> %s: server saw client %q", client.Name, s.id.Name, got)
	}
	tc := conn.(*tls.Conn)
	if peer := tc.ConnectionState().PeerCertificates[0]; peer.Subject.CommonName != s.id.Name {
		return fmt.Errorf("%s -> %s: server presented %q", client.Name, s.id.Name, peer.Subject.CommonName)
	}
	return nil
}
