// Package pluginhost is the host's side of the transport between a host and its plugins
// (the sdk's Serve is the plugin's; sdk/transport.go describes the exchange): one P-256
// identity per host process, and for each plugin launch a leaf signed by it, handed to
// the plugin through an inherited pipe. The tlsrelay host and the conformance kit
// (plugintest) launch plugins with it; a plugin author never needs it.
package pluginhost

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// Identity is the host's: a self-signed P-256 certificate that is both its client
// certificate and the CA of the plugins' leaves.
type Identity struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	tls  tls.Certificate
}

// NewIdentity makes a host identity.
func NewIdentity() (*Identity, error) {
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
	return &Identity{cert: cert, key: key, tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}, nil
}

// CertPEM is the host's certificate, PEM (PLUGIN_CLIENT_CERT for older plugins).
func (h *Identity) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw})
}

// ClientConfig is the host's side of one plugin's connection: its certificate, and
// trust in its own (which signs the plugins' leaves). Each plugin gets its own copy,
// since go-plugin sets RootCAs on it for a plugin that answers with AutoMTLS.
func (h *Identity) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(h.cert)
	return &tls.Config{Certificates: []tls.Certificate{h.tls}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
}

// PluginIdentity makes a plugin's leaf, signed by the host, encoded for the pipe.
func (h *Identity) PluginIdentity() ([]byte, error) {
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
// descriptor of cmd.ExtraFiles, named by sdk.EnvTransportFD), with PLUGIN_CLIENT_CERT for a
// plugin of an older sdk, and returns the host's side of the TLS configuration. The
// caller closes its copy of cmd.ExtraFiles once the process has started.
func (h *Identity) Hand(cmd *exec.Cmd) (*tls.Config, error) {
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
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", sdk.EnvTransportFD, 2+len(cmd.ExtraFiles)),
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
