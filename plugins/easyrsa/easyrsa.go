// Package easyrsa is the tlsrelay backend that drives real easy-rsa 3 (Debian
// `easy-rsa`) in batch mode: a PKI initialised once with a CA (build-ca nopass), CSRs
// from gen-req in a throwaway PKI, and signing by import-req and sign-req with the
// CSR's checked SANs passed explicitly (sign-req does not copy CSR extensions for every
// type). easy-rsa keeps its database in files that concurrent runs corrupt, so every run
// against the CA's PKI is serialised, within the process and across processes.
package easyrsa

import (
	"context"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/casettings"
)

// Name is the backend's name in configuration.
const Name = "easyrsa"

// Version is reported by Info: the build of tlsrelay that serves it (builtin.SetVersion),
// "dev" in a binary that does not say.
var Version = "dev"

// DefaultEasyRSA is where Debian installs the script.
const DefaultEasyRSA = "/usr/share/easy-rsa/easyrsa"

// Config is the backend's `config:` section.
type Config struct {
	// EasyRSA is the easyrsa script: a path, or a name looked up in PATH.
	EasyRSA string `json:"easyrsa"`
	// PKI is the easy-rsa PKI directory of the CA. Default: pki in the state directory.
	PKI string `json:"pki"`
	// ca_common_name, ca_validity, default_validity; validities are rounded up to days.
	casettings.Settings
}

// Backend implements sdk.Backend with easy-rsa.
type Backend struct {
	sdk.Unimplemented
	log hclog.Logger

	mu         sync.Mutex // guards the fields below and serialises runs on the CA's PKI
	configured bool
	tool       tool
	pki        string
	scratch    string // where throwaway PKIs for CSRs are made
	settings   casettings.Parsed
	caPEM      []byte
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
		Capabilities: []sdk.Capability{sdk.CapCreateCSR, sdk.CapSignCSR, sdk.CapCA, sdk.CapCAExport, sdk.CapCAImport}}, nil
}

// Configure implements sdk.Backend: it finds easyrsa and checks its version.
func (b *Backend) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg := Config{EasyRSA: DefaultEasyRSA, Settings: casettings.Defaults("tlsrelay easyrsa CA")}
	if err := sdk.DecodeConfig(req.ConfigJSON, &cfg); err != nil {
		return err
	}
	scratch := req.StateDir
	if scratch == "" {
		scratch = os.TempDir()
	}
	if cfg.PKI == "" && req.StateDir == "" {
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.pki", "no PKI directory: set pki or give a state directory")
	}
	if cfg.PKI == "" {
		cfg.PKI = filepath.Join(req.StateDir, "pki")
	}
	settings, err := cfg.Parse()
	if err != nil {
		return err
	}
	t, version, err := findTool(ctx, cfg.EasyRSA)
	if err != nil {
		return err
	}
	b.log.Debug("configured", "easyrsa", t.path, "version", version, "pki", cfg.PKI)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tool, b.pki, b.scratch, b.settings = t, cfg.PKI, scratch, settings
	b.caPEM, b.configured = nil, true
	return nil
}
