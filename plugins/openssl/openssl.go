// Package openssl is the tlsrelay backend that drives the real `openssl` command: keys
// with genpkey, CSRs with req, a CA created on first use with req -x509, and signing
// with x509 -req and an extensions file built from the checked CSR. Keys travel through
// pipes, never through temporary files.
package openssl

import (
	"context"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/casettings"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Name is the backend's name in configuration.
const Name = "openssl"

// Version is reported by Info: the build of tlsrelay that serves it (builtin.SetVersion),
// "dev" in a binary that does not say.
var Version = "dev"

// Config is the backend's `config:` section.
type Config struct {
	// OpenSSL is the openssl binary: a path, or a name looked up in PATH.
	OpenSSL string `json:"openssl"`
	// Dir holds ca.pem and ca-key.pem. Default: the state directory the host gives.
	Dir string `json:"dir"`
	// ca_common_name, ca_validity, default_validity; validities are rounded up to days.
	casettings.Settings
}

// Backend implements sdk.Backend with the openssl command.
type Backend struct {
	sdk.Unimplemented
	log hclog.Logger

	mu         sync.Mutex
	configured bool
	tool       tool
	dir        string
	settings   casettings.Parsed
	caPEM      []byte // loaded on first use
}

// New returns an unconfigured backend that logs to log (nil: nowhere).
func New(log hclog.Logger) *Backend {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Backend{log: log}
}

var _ sdk.Backend = (*Backend)(nil)

// Info implements sdk.Backend.
func (b *Backend) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: Name, Version: Version,
		Capabilities: []sdk.Capability{sdk.CapCreateCSR, sdk.CapSignCSR, sdk.CapCA, sdk.CapCAExport, sdk.CapCAImport, sdk.CapCRL}}, nil
}

// Configure implements sdk.Backend: it finds openssl and checks its version.
func (b *Backend) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg := Config{OpenSSL: "openssl", Settings: casettings.Defaults("tlsrelay openssl CA")}
	if err := sdk.DecodeConfig(req.ConfigJSON, &cfg); err != nil {
		return err
	}
	if cfg.Dir == "" {
		cfg.Dir = req.StateDir
	}
	if cfg.Dir == "" {
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.dir", "no CA directory: set dir or give a state directory")
	}
	settings, err := cfg.Parse()
	if err != nil {
		return err
	}
	t, version, err := findTool(ctx, cfg.OpenSSL)
	if err != nil {
		return err
	}
	b.log.Debug("configured", "openssl", t.path, "version", version, "dir", cfg.Dir)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tool, b.dir, b.settings = t, cfg.Dir, settings
	b.caPEM, b.configured = nil, true
	return nil
}

func (b *Backend) state() (tool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.configured {
		return tool{}, sdk.Errorf(sdk.CodeFailedPrecondition, Name, "Configure has not been called")
	}
	return b.tool, nil
}

// CreateCSR implements sdk.Backend: genpkey writes the key to a pipe, req reads it from
// one and writes the CSR.
func (b *Backend) CreateCSR(ctx context.Context, req sdk.CSRRequest) (sdk.CSR, error) {
	t, err := b.state()
	if err != nil {
		return sdk.CSR{}, err
	}
	if err := certutil.CheckCSRRequest(req); err != nil {
		return sdk.CSR{}, err
	}
	keyPEM, err := t.run(ctx, nil, append([]string{"genpkey"}, keyArgs(req.Key)...)...)
	if err != nil {
		return sdk.CSR{}, err
	}
	args := []string{"req", "-new", "-key", "/dev/stdin", "-utf8", "-subj", subject(req.CommonName), "-config", fd3}
	if len(req.SANs) > 0 {
		args = append(args, "-addext", "subjectAltName="+sanList(req.SANs))
	}
	csrPEM, err := t.runWithFile(ctx, keyPEM, reqConfig, args...)
	if err != nil {
		return sdk.CSR{}, err
	}
	return sdk.CSR{CSRPEM: csrPEM, Key: keyPEM}, nil
}

// reqConfig is a minimal `openssl req` configuration, so that CSRs do not depend on
// the system's openssl.cnf.
var reqConfig = []byte("[req]\ndistinguished_name = dn\n[dn]\n")

// sanList renders checked SANs for openssl: DNS:name or IP:address, comma-separated.
func sanList(sans []string) string {
	parts := make([]string, len(sans))
	dns, ips := certutil.SplitSANs(sans)
	i := 0
	for _, d := range dns {
		parts[i] = "DNS:" + d
		i++
	}
	for _, ip := range ips {
		parts[i] = "IP:" + ip.String()
		i++
	}
	return strings.Join(parts, ",")
}

// randomSerial is a positive 159-bit serial in hex, as RFC 5280 allows (at most 20 octets).
func randomSerial() (string, error) {
	n, err := certutil.RandomSerial()
	if err != nil {
		return "", err
	}
	return "0x" + n.Text(16), nil
}
