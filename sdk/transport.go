package sdk

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// The host and its plugins talk gRPC over mutual TLS on a unix socket. go-plugin's
// AutoMTLS makes a P-521 key and certificate on each side at every launch, the larger
// part of a plugin's start. Instead the host makes one P-256 identity per process and,
// at each launch, a P-256 leaf for the plugin signed by it, handed to the plugin through
// an inherited pipe (never the environment, never a file): EnvTransportFD names the
// descriptor. A plugin built with an sdk that predates this sees no EnvTransportFD and
// falls back to AutoMTLS's server side (the host sets PLUGIN_CLIENT_CERT for it).

// EnvTransportFD names the descriptor the plugin reads its TLS identity from.
const EnvTransportFD = "TLSRELAY_PLUGIN_TLS_FD"

// TransportIdentity is one side's TLS identity and the certificate it trusts.
type TransportIdentity struct {
	Cert    tls.Certificate
	Trusted *x509.Certificate
}

// HostIdentity is the host's: a self-signed P-256 certificate that is both its client
// certificate and the CA of the plugins' leaves.
type HostIdentity struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	tls  tls.Certificate
}

// NewHostIdentity makes a host identity.
func NewHostIdentity() (*HostIdentity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := transportTemplate("tlsrelay host")
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return &HostIdentity{cert: cert, key: key, tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}, nil
}

// CertPEM is the host's certificate, PEM (PLUGIN_CLIENT_CERT for older plugins).
func (h *HostIdentity) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw})
}

// ClientConfig is the host's side of one plugin's connection: its certificate, and
// trust in its own (which signs the plugins' leaves). Each plugin gets its own copy,
// since go-plugin sets RootCAs on it for a plugin that answers with AutoMTLS.
func (h *HostIdentity) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(h.cert)
	return &tls.Config{Certificates: []tls.Certificate{h.tls}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
}

// PluginIdentity makes a plugin's leaf, signed by the host, encoded for the pipe.
func (h *HostIdentity) PluginIdentity() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, transportTemplate("tlsrelay plugin"), h.cert, key.Public(), h.key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	return append(out, h.CertPEM()...), nil
}

// Hand gives the plugin cmd will run its own leaf through an inherited pipe (the next
// descriptor of cmd.ExtraFiles, named by EnvTransportFD), with PLUGIN_CLIENT_CERT for a
// plugin of an older sdk, and returns the host's side of the TLS configuration. The
// caller closes its copy of cmd.ExtraFiles once the process has started.
func (h *HostIdentity) Hand(cmd *exec.Cmd) (*tls.Config, error) {
	leaf, err := h.PluginIdentity()
	if err != nil {
		return nil, fmt.Errorf("the plugin's TLS identity: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("the plugin's TLS identity: %w", err)
	}
	_, err = w.Write(leaf) // about a kilobyte: within the pipe's buffer, so no reader is needed yet
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("the plugin's TLS identity: %w", err)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", EnvTransportFD, 2+len(cmd.ExtraFiles)),
		"PLUGIN_CLIENT_CERT="+string(h.CertPEM()))
	return h.ClientConfig(), nil
}

func transportTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
}

// ReadTransportIdentity reads what PluginIdentity wrote: the plugin's certificate and
// key, and the host's certificate.
func ReadTransportIdentity(r io.Reader) (TransportIdentity, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return TransportIdentity{}, err
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
		return TransportIdentity{}, fmt.Errorf("transport identity: %d PEM blocks, want certificate, key, host certificate", len(blocks))
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(blocks[0]), pem.EncodeToMemory(blocks[1]))
	if err != nil {
		return TransportIdentity{}, fmt.Errorf("transport identity: %w", err)
	}
	host, err := x509.ParseCertificate(blocks[2].Bytes)
	if err != nil {
		return TransportIdentity{}, fmt.Errorf("transport identity: host certificate: %w", err)
	}
	return TransportIdentity{Cert: cert, Trusted: host}, nil
}

// ServerConfig is the plugin's side: its leaf, and only the host's certificate trusted
// for clients.
func (id TransportIdentity) ServerConfig() *tls.Config {
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
		id, err := ReadTransportIdentity(f)
		if err != nil {
			return nil, err
		}
		return id.ServerConfig(), nil
	}
}
