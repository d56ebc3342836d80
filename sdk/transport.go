package sdk

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// The host and its plugins talk gRPC over mutual TLS on a unix socket. go-plugin's
// AutoMTLS makes a P-521 key and certificate on each side at every launch, the larger
// part of a plugin's start. Instead the host makes one P-256 identity per process and,
// at each launch, a P-256 leaf for the plugin signed by it, handed to the plugin through
// an inherited pipe (never the environment, never a file): EnvTransportFD names the
// descriptor, which holds three PEM blocks: the plugin's certificate, its EC private key
// and the host's certificate. The host's side is tlsrelay's (core/backend); Serve reads
// the pipe. A plugin built with an sdk that predates this sees no EnvTransportFD and
// falls back to AutoMTLS's server side (the host sets PLUGIN_CLIENT_CERT for it).

// EnvTransportFD names the descriptor the plugin reads its TLS identity from.
const EnvTransportFD = "TLSRELAY_PLUGIN_TLS_FD"

// transportIdentity is the plugin's TLS identity, as the host hands it: its leaf and
// the host's certificate, which it trusts for clients.
type transportIdentity struct {
	Cert    tls.Certificate
	Trusted *x509.Certificate
}

// readTransportIdentity reads what the host wrote to the pipe: three PEM blocks, the
// plugin's certificate, its key and the host's certificate.
func readTransportIdentity(r io.Reader) (transportIdentity, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return transportIdentity{}, err
	}
	var blocks []*pem.Block
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) != 3 {
		return transportIdentity{}, fmt.Errorf("transport identity: %d PEM blocks, want certificate, key, host certificate", len(blocks))
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(blocks[0]), pem.EncodeToMemory(blocks[1]))
	if err != nil {
		return transportIdentity{}, fmt.Errorf("transport identity: %w", err)
	}
	host, err := x509.ParseCertificate(blocks[2].Bytes)
	if err != nil {
		return transportIdentity{}, fmt.Errorf("transport identity: host certificate: %w", err)
	}
	return transportIdentity{Cert: cert, Trusted: host}, nil
}

// serverConfig is the plugin's side: its leaf, and only the host's certificate trusted
// for clients.
func (id transportIdentity) serverConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(id.Trusted)
	return &tls.Config{Certificates: []tls.Certificate{id.Cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13}
}

// transportProvider is Serve's TLSProvider when the host handed an identity: it reads
// the descriptor EnvTransportFD names (once) and serves with it.
func transportProvider() func() (*tls.Config, error) {
	fdText := os.Getenv(EnvTransportFD)
	if fdText == "" {
		return nil
	}
	return func() (*tls.Config, error) {
		fd, err := strconv.Atoi(fdText)
		if err != nil || fd < 3 {
			return nil, errors.New(EnvTransportFD + ": not a descriptor: " + fdText)
		}
		f := os.NewFile(uintptr(fd), "tlsrelay-transport")
		defer f.Close()
		id, err := readTransportIdentity(f)
		if err != nil {
			return nil, err
		}
		return id.serverConfig(), nil
	}
}
