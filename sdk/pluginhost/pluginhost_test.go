package pluginhost

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
)

// What the host hands a plugin is its leaf, signed by the host, the leaf's key and the
// host's certificate; a server built from it (as the sdk's Serve builds one) completes
// mutual TLS with this host and refuses another.
func TestPluginIdentity(t *testing.T) {
	host, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := NewIdentity()
	leaf, err := host.PluginIdentity()
	if err != nil {
		t.Fatal(err)
	}
	var blocks []*pem.Block
	for rest := leaf; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) != 3 || blocks[0].Type != "CERTIFICATE" || blocks[1].Type != "EC PRIVATE KEY" ||
		!bytes.Equal(pem.EncodeToMemory(blocks[2]), host.CertPEM()) {
		t.Fatalf("the identity holds %d blocks; want the leaf, its EC key and the host's certificate", len(blocks))
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(blocks[0]), pem.EncodeToMemory(blocks[1]))
	if err != nil {
		t.Fatal(err)
	}
	trusted, _ := x509.ParseCertificate(blocks[2].Bytes)
	pool := x509.NewCertPool()
	pool.AddCert(trusted)
	server := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	for _, tt := range []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"the issuing host", host.ClientConfig(), true},
		{"another host", stranger.ClientConfig(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, s := connPair(t)
			defer c.Close()
			defer s.Close()
			serverErr := make(chan error, 1)
			go func() {
				srv := tls.Server(s, server)
				serverErr <- srv.Handshake()
				srv.Close()
			}()
			clientErr := tls.Client(c, tt.client).Handshake()
			c.Close()
			if ok := clientErr == nil && <-serverErr == nil; ok != tt.ok {
				t.Fatalf("handshake succeeded: %v, want %v (client %v)", ok, tt.ok, clientErr)
			}
		})
	}
}

// connPair is a connected pair of loopback TCP connections (a net.Pipe has no buffer:
// a handshake refused by both sides at once would block each on its write).
func connPair(t *testing.T) (net.Conn, net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c, s
}
