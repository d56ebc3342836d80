// Package pkcs11 is the tlsrelay signer whose CA key lives in a PKCS#11 token (an HSM,
// SoftHSM) and never leaves it: the key is generated in the token as sensitive and not
// extractable, the CA certificate is kept beside it in the token, and every signature
// (certificates, CRLs) is the token's. Rotation makes the next key in the token
// (ca_generate); the key is never exported or imported. With shared: true (a network
// HSM, a token every leader-eligible host reaches) it claims ca_shared, so a new leader
// signs with the same key and no ca_seal is needed.
//
// It uses github.com/ThalesGroup/crypto11 (cgo, through miekg/pkcs11), so it ships as its
// own plugin binary (cmd/tlsrelay-plugin-pkcs11), never inside tlsrelay, which stays a
// static binary that builds without a C compiler.
package pkcs11

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/casettings"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// Name and Version are what Info reports.
const Name = "pkcs11"

// Version is reported by Info: "dev" unless the binary that serves it sets it (its main
// may, with -ldflags -X).
var Version = "dev"

// Config is the backend's `config:` section.
type Config struct {
	// Module is the PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
	Module string `json:"module"`
	// TokenLabel names the token.
	TokenLabel string `json:"token_label"`
	// PinFile holds the user PIN (mode 0600 or stricter); PinEnv names an environment
	// variable that does (declare it under the plugin's env:). Exactly one.
	PinFile string `json:"pin_file"`
	PinEnv  string `json:"pin_env"`
	// KeyLabel labels the CA's key pairs and certificates in the token. Default
	// "tlsrelay-ca".
	KeyLabel string `json:"key_label"`
	// Shared: every leader-eligible host's signer reaches this token (a network HSM),
	// so the CA's custody is shared.
	Shared bool `json:"shared"`
	// ca_common_name, ca_validity, default_validity.
	casettings.Settings
}

// Backend implements sdk.Backend with a PKCS#11 token.
type Backend struct {
	sdk.Unimplemented

	mu       sync.Mutex
	cfg      Config
	settings casettings.Parsed
	stateDir string
	token    *crypto11.Context
	ca       *authority // the current CA, found or made on first use
}

// New returns an unconfigured backend.
func New() *Backend { return &Backend{} }

var (
	_ sdk.Backend     = (*Backend)(nil)
	_ sdk.CAGenerator = (*Backend)(nil)
	_ sdk.CRLSigner   = (*Backend)(nil)
	_ sdk.BatchSigner = (*Backend)(nil)
	_ sdk.Closer      = (*Backend)(nil)
)

// Info implements sdk.Backend. The host asks for it after Configure, so shared follows
// the config.
func (b *Backend) Info(context.Context) (sdk.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	caps := []sdk.Capability{sdk.CapSignCSR, sdk.CapSignCSRs, sdk.CapCA, sdk.CapCRL, sdk.CapCAGenerate}
	if b.cfg.Shared {
		caps = append(caps, sdk.CapCAShared)
	}
	return sdk.Info{Name: Name, Version: Version, Capabilities: caps}, nil
}

// Configure implements sdk.Backend: it logs in to the token.
func (b *Backend) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	cfg := Config{KeyLabel: "tlsrelay-ca", Settings: casettings.Defaults("tlsrelay CA")}
	if err := sdk.DecodeConfig(req.ConfigJSON, &cfg); err != nil {
		return err
	}
	settings, err := cfg.Settings.Parse()
	if err != nil {
		return err
	}
	pin, err := cfg.pin()
	if err != nil {
		return err
	}
	switch {
	case cfg.Module == "":
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.module", "the PKCS#11 library is required (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)")
	case cfg.TokenLabel == "":
		return sdk.Errorf(sdk.CodeInvalidArgument, "config.token_label", "the token's label is required")
	}
	if _, err := os.Stat(cfg.Module); err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, "config.module", "%v", err)
	}
	token, err := openToken(&crypto11.Config{Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: pin})
	if err != nil {
		return loginError(cfg, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token != nil {
		b.token.Close()
	}
	b.cfg, b.settings, b.stateDir, b.token, b.ca = cfg, settings, req.StateDir, token, nil
	return nil
}

// pin reads the user PIN from pin_file or pin_env.
func (c Config) pin() (string, error) {
	switch {
	case c.PinFile != "" && c.PinEnv != "":
		return "", sdk.Errorf(sdk.CodeInvalidArgument, "config.pin_file", "set pin_file or pin_env, not both")
	case c.PinFile != "":
		// The rule every secret file of tlsrelay's has (safedir.ReadSecret): 0600 or
		// stricter, this user's or root's.
		b, err := safedir.ReadSecret(c.PinFile)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return "", sdk.Errorf(sdk.CodeFailedPrecondition, "config.pin_file", "%v", err)
		}
		if err != nil {
			return "", sdk.Errorf(sdk.CodeInvalidArgument, "config.pin_file", "%v", err)
		}
		return strings.TrimSpace(string(b)), nil
	case c.PinEnv != "":
		pin, ok := os.LookupEnv(c.PinEnv)
		if !ok {
			return "", sdk.Errorf(sdk.CodeFailedPrecondition, "config.pin_env",
				"%s is not set in the plugin's environment (declare it under the plugin's env:)", c.PinEnv)
		}
		return pin, nil
	}
	return "", sdk.Errorf(sdk.CodeInvalidArgument, "config.pin_file", "the token's user PIN is required: set pin_file or pin_env")
}

// openTries bounds the attempts to open a token.
const openTries = 5

// openToken opens the token, again after a failure that is not the PIN's: SoftHSM2
// answers CKR_GENERAL_ERROR or CKR_USER_PIN_NOT_INITIALIZED now and then to a process
// that opens a token while another writes it (its file store), as the agents of one
// host and a plugin restarted beside its predecessor do. A refused PIN is never tried
// again: each try would count toward locking it.
func openToken(c *crypto11.Config) (*crypto11.Context, error) {
	for try := 1; ; try++ {
		token, err := crypto11.Configure(c)
		if err == nil || try == openTries || pinRefused(err) {
			return token, err
		}
		time.Sleep(time.Duration(try) * 50 * time.Millisecond)
	}
}

func pinRefused(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "CKR_PIN_INCORRECT") || strings.Contains(msg, "CKR_PIN_LEN_RANGE") || strings.Contains(msg, "CKR_PIN_LOCKED")
}

// loginError classifies crypto11's failure to open the token.
func loginError(cfg Config, err error) error {
	msg := err.Error()
	switch {
	case pinRefused(err):
		return sdk.Errorf(sdk.CodePermissionDenied, "config.pin_file", "token %q refused the PIN: %v", cfg.TokenLabel, err)
	case strings.Contains(msg, "could not find PKCS#11 token"), strings.Contains(msg, "no slot"):
		return sdk.Errorf(sdk.CodeFailedPrecondition, "config.token_label", "no token labelled %q in %s: %v", cfg.TokenLabel, cfg.Module, err)
	}
	return sdk.Errorf(sdk.CodeFailedPrecondition, "config.module", "open token %q with %s: %v", cfg.TokenLabel, cfg.Module, err)
}

// Close implements sdk.Closer: it logs out and closes the token's sessions.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token == nil {
		return nil
	}
	err := b.token.Close()
	b.token, b.ca = nil, nil
	return err
}

// CA implements sdk.Backend: the current CA, made in the token on first use.
func (b *Backend) CA(context.Context) (sdk.CA, error) {
	ca, err := b.authority()
	if err != nil {
		return sdk.CA{}, err
	}
	return sdk.CA{BundlePEM: certutil.CertPEM(ca.cert.Raw)}, nil
}

// SignCSR implements sdk.Backend: the token's key signs.
func (b *Backend) SignCSR(_ context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	plan, err := certutil.CheckSignRequest(req, b.defaultValidity())
	if err != nil {
		return sdk.Certificate{}, err
	}
	ca, err := b.authority()
	if err != nil {
		return sdk.Certificate{}, err
	}
	if ca.cert.NotAfter.Before(time.Now().Add(plan.Validity)) {
		plan.Validity = time.Until(ca.cert.NotAfter) // no leaf outlives its CA
	}
	chain, err := plan.Sign(ca.cert, ca.key)
	if err != nil {
		return sdk.Certificate{}, sdk.Errorf(sdk.CodeUnavailable, req.Unit, "the token did not sign: %v", err)
	}
	return sdk.Certificate{ChainPEM: chain}, nil
}

// SignCSRs implements sdk.BatchSigner: crypto11 keeps a pool of sessions, so signatures
// run in parallel.
func (b *Backend) SignCSRs(ctx context.Context, reqs []sdk.SignRequest) ([]sdk.SignResult, error) {
	return sdk.SignInParallel(ctx, b.SignCSR, reqs), nil
}

// SignCRL implements sdk.CRLSigner.
func (b *Backend) SignCRL(_ context.Context, req sdk.CRLRequest) (sdk.CRL, error) {
	if err := certutil.CheckCRLRequest(req); err != nil {
		return sdk.CRL{}, err
	}
	ca, err := b.authority()
	if err != nil {
		return sdk.CRL{}, err
	}
	pemBytes, err := certutil.NewCRL(ca.cert, ca.key, req)
	if err != nil {
		return sdk.CRL{}, sdk.Errorf(sdk.CodeUnavailable, "crl", "the token did not sign the CRL: %v", err)
	}
	return sdk.CRL{PEM: pemBytes}, nil
}

// GenerateCA implements sdk.CAGenerator: a new key in the token and its self-signed
// certificate, which signs from then on; the old CA stays in the token.
func (b *Backend) GenerateCA(_ context.Context, req sdk.GenerateCARequest) (sdk.CA, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token == nil {
		return sdk.CA{}, notConfigured()
	}
	name, life := req.CommonName, req.Validity
	if name == "" {
		name = b.settings.CACommonName
	}
	if life == 0 {
		life = b.settings.CAValidity
	}
	ca, err := b.store().next(name, life)
	if err != nil {
		return sdk.CA{}, err
	}
	b.ca = ca
	return sdk.CA{BundlePEM: certutil.CertPEM(ca.cert.Raw)}, nil
}

func (b *Backend) defaultValidity() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.settings.DefaultValidity
}

// authority returns the current CA, finding or making it on first use.
func (b *Backend) authority() (*authority, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token == nil {
		return nil, notConfigured()
	}
	if b.ca != nil && !b.cfg.Shared {
		return b.ca, nil
	}
	// A shared token may have moved to a new CA made by another host's leader: look
	// each time (a lookup in the token, no signature).
	ca, err := b.store().current(b.settings.CACommonName, b.settings.CAValidity)
	if err != nil {
		return nil, err
	}
	b.ca = ca
	return ca, nil
}

func (b *Backend) store() tokenStore {
	return tokenStore{token: b.token, label: b.cfg.KeyLabel, lockDir: b.stateDir}
}

func notConfigured() error {
	return sdk.Errorf(sdk.CodeFailedPrecondition, Name, "Configure has not been called")
}

// authority is a CA whose key is in the token.
type authority struct {
	cert *x509.Certificate
	key  crypto11.Signer
	id   string
}

func (a *authority) String() string {
	return fmt.Sprintf("%s (id %s)", a.cert.Subject.CommonName, a.id)
}
