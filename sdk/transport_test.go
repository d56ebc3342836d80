package sdk

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// testHost writes a transport identity as a host does (pluginhost): a leaf signed by the
// host's self-signed certificate, its key, and the host's certificate.
type testHost struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestHost(t *testing.T) testHost {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := transportTestTemplate("host")
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testHost{cert, key}
}

func (h testHost) pipeContents(t *testing.T) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, transportTestTemplate("plugin"), h.cert, key.Public(), h.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw})...)
}

func (h testHost) clientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(h.cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{h.cert.Raw}, PrivateKey: h.key}},
		RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
}

func transportTestTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
}

// The plugin serves with the leaf its host handed it, and accepts only that host as a
// client: mutual TLS, both sides verified.
func TestTransportIdentity(t *testing.T) {
	host, stranger := newTestHost(t), newTestHost(t)
	leaf := host.pipeContents(t)
	id, err := readTransportIdentity(bytes.NewReader(leaf))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"the issuing host", host.clientConfig(), true},
		{"another host", stranger.clientConfig(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := connPair(t)
			defer c.Close()
			defer s.Close()
			serverErr := make(chan error, 1)
			go func() {
				srv := tls.Server(s, id.serverConfig())
				serverErr <- srv.Handshake()
				srv.Close()
			}()
			clientErr := tls.Client(c, tt.client).Handshake()
			c.Close()
			sErr := <-serverErr
			if ok := clientErr == nil && sErr == nil; ok != tt.ok {
				t.Fatalf("handshake: client %v, server %v; want success %v", clientErr, sErr, tt.ok)
			}
		})
	}
	if _, err := readTransportIdentity(bytes.NewReader(leaf[:len(leaf)/2])); err == nil {
		t.Fatal("a truncated identity was read")
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
