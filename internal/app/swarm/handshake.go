package swarm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// Handshake has client dial server over loopback and complete a mutual-TLS handshake,
// each with what it holds at that moment (Material): its certificate, and the CA bundle
// it trusts for the other's. This is what a rotation must never break.
func Handshake(ctx context.Context, client, server *Unit) error {
	c, s := client.Material(), server.Material()
	if c.TLS == nil || s.TLS == nil {
		return errors.New("a unit holds no certificate yet")
	}
	clientRoots, serverRoots := x509.NewCertPool(), x509.NewCertPool()
	if !clientRoots.AppendCertsFromPEM([]byte(c.CAPEM)) || !serverRoots.AppendCertsFromPEM([]byte(s.CAPEM)) {
		return errors.New("a unit's CA bundle holds no certificate")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{*s.TLS}, ClientCAs: serverRoots,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
		served <- tc.HandshakeContext(ctx)
	}()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{Certificates: []tls.Certificate{*c.TLS}, RootCAs: clientRoots,
		ServerName: protocol.UnitDNSName(server.name), MinVersion: tls.VersionTLS12})
	dialed := tc.HandshakeContext(ctx)
	if err := <-served; err != nil {
		return fmt.Errorf("%s serving %s: %w", server.name, client.name, err)
	}
	if dialed != nil {
		return fmt.Errorf("%s dialing %s: %w", client.name, server.name, dialed)
	}
	return nil
}
