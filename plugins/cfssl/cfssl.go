// Package cfssl is the tlsrelay backend built on Cloudflare's cfssl library: keys and CSRs
// (csr), a CA created on first use (initca) and persisted in its directory, and signing
// (signer/local) with the server, client and peer profiles.
package cfssl

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	cfconfig "github.com/cloudflare/cfssl/config"
	cfcsr "github.com/cloudflare/cfssl/csr"
	cferr "github.com/cloudflare/cfssl/errors"
	cflog "github.com/cloudflare/cfssl/log"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/casettings"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Name is the backend's name in configuration.
const Name = "cfssl"

// Version is reported by Info: the build of tlsrelay that serves it (builtin.SetVersion),
// "dev" in a binary that does not say.
var Version = "dev"

// Config is the backend's `config:` section.
type Config struct {
	// Dir holds ca.pem and ca-key.pem. Default: the state directory the host gives.
	Dir string `json:"dir"`
	// ca_common_name, ca_validity, default_validity.
	casettings.Settings
}

// Backend implements sdk.Backend with cfssl.
type Backend struct {
	sdk.Unimplemented
	log hclog.Logger

	mu         sync.Mutex
	configured bool
	dir        string
	settings   casettings.Parsed
	ca         *authority // loaded or created on first use
}

var quietCfssl sync.Once

// New returns an unconfigured backend that logs to log (nil: nowhere).
func New(log hclog.Logger) *Backend {
	quietCfssl.Do(func() {
		// cfssl logs through its own package to stderr, unstructured; keep it quiet so
		// the plugin's stderr stays the JSON hclog stream the host parses. cfssl reads
		// this global on every call: it is written once, before any backend exists.
		cflog.Level = cflog.LevelFatal
	})
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Backend{log: log}
}

var _ sdk.Backend = (*Backend)(nil)

// Info implements sdk.Backend.
func (b *Backend) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:         Name,
		Version:      Version,
		Capabilities: []sdk.Capability{sdk.CapCreateCSR, sdk.CapSignCSR, sdk.CapCA, sdk.CapCAExport, sdk.CapCAImport, sdk.CapCRL, sdk.CapSignCSRs},
	}, nil
}

// Configure implements sdk.Backend.
func (b *Backend) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	cfg := Config{Settings: casettings.Defaults("tlsrelay CA")}
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
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dir, b.settings, b.ca = cfg.Dir, settings, nil
	b.configured = true
	return nil
}

// CreateCSR implements sdk.Backend.
func (b *Backend) CreateCSR(_ context.Context, req sdk.CSRRequest) (sdk.CSR, error) {
	if err := certutil.CheckCSRRequest(req); err != nil {
		return sdk.CSR{}, err
	}
	csrPEM, keyPEM, err := cfcsr.ParseRequest(&cfcsr.CertificateRequest{
		CN:         req.CommonName,
		Hosts:      req.SANs,
		KeyRequest: &cfcsr.KeyRequest{A: req.Key.Algorithm, S: req.Key.Size},
	})
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInternal, req.CommonName, "cfssl could not create the CSR: %v", err)
	}
	return sdk.CSR{CSRPEM: csrPEM, Key: keyPEM}, nil
}

// CA implements sdk.Backend: it loads the CA from Dir, creating it on first use.
func (b *Backend) CA(context.Context) (sdk.CA, error) {
	ca, err := b.authority()
	if err != nil {
		return sdk.CA{}, err
	}
	return sdk.CA{BundlePEM: ca.certPEM}, nil
}

// ExportCA implements sdk.Backend: the CA in Dir, created on first use.
func (b *Backend) ExportCA(ctx context.Context) (sdk.CAKeyPair, error) {
	if _, err := b.authority(); err != nil {
		return sdk.CAKeyPair{}, err
	}
	return castore.ExportCA(b.dir)
}

// ImportCA implements sdk.Backend: the CA replaces the one in Dir and signs from now on.
func (b *Backend) ImportCA(_ context.Context, ca sdk.CAKeyPair) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.configured {
		return sdk.Errorf(sdk.CodeFailedPrecondition, Name, "Configure has not been called")
	}
	if err := castore.ImportCA(b.dir, ca); err != nil {
		return err
	}
	b.ca = nil // loaded again on next use
	return nil
}

// SignCSR implements sdk.Backend.
func (b *Backend) SignCSR(_ context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	// cfssl's signer checks the CSR's signature (and refuses a bad one, answered as
	// InvalidArgument below); checking it here too would verify it twice.
	plan, err := certutil.CheckSignRequestExceptSignature(req, b.settings.DefaultValidity)
	if err != nil {
		return sdk.Certificate{}, err
	}
	ca, err := b.authority()
	if err != nil {
		return sdk.Certificate{}, err
	}
	now := time.Now()
	certPEM, err := ca.signer.Sign(signer.SignRequest{
		Request: string(req.CSRPEM),
		Profile: profileName(req.Profile, plan.CSR.PublicKey),
		// The subject is rebuilt from the checked common name alone.
		Subject:   &signer.Subject{CN: plan.CSR.Subject.CommonName},
		NotBefore: now.Add(-certutil.Backdate),
		NotAfter:  now.Add(plan.Validity),
	})
	if err != nil {
		var cfErr *cferr.Error
		if errors.As(err, &cfErr) && cfErr.ErrorCode == int(cferr.CSRError)+int(cferr.KeyMismatch) {
			return sdk.Certificate{}, sdk.Errorf(sdk.CodeInvalidArgument, "csr of "+req.Unit, "CSR signature does not verify: %s", cfErr.Message)
		}
		return sdk.Certificate{}, sdk.Errorf(sdk.CodeInvalidArgument, "csr of "+req.Unit, "cfssl refused to sign: %v", err)
	}
	return sdk.Certificate{ChainPEM: certPEM}, nil
}

// signingPolicy gives cfssl one profile per sdk.Profile, with usages from certutil so
// every backend grants the same ones. The whitelist copies only the subject, the key and
// the SANs from a CSR: never its subject (rebuilt from the common name), a request to be
// a CA, email SANs or other extensions.
func signingPolicy(defaultValidity time.Duration) (*cfconfig.Signing, error) {
	policy := &cfconfig.Signing{
		Profiles: map[string]*cfconfig.SigningProfile{},
		Default:  &cfconfig.SigningProfile{Expiry: defaultValidity, Usage: []string{"digital signature"}},
	}
	for _, p := range sdk.Profiles {
		for _, pub := range []crypto.PublicKey{&rsa.PublicKey{}, &ecdsa.PublicKey{}} {
			if err := addProfile(policy, p, pub, defaultValidity); err != nil {
				return nil, err
			}
		}
	}
	if !policy.Valid() {
		return nil, fmt.Errorf("cfssl signing policy is invalid")
	}
	return policy, nil
}

// profileName names the cfssl profile for an sdk.Profile and a key: an RSA key's
// usages differ from an EC key's (certutil.UsagesFor).
func profileName(p sdk.Profile, pub crypto.PublicKey) string {
	if _, isRSA := pub.(*rsa.PublicKey); isRSA {
		return string(p) + "-rsa"
	}
	return string(p)
}

func addProfile(policy *cfconfig.Signing, p sdk.Profile, pub crypto.PublicKey, defaultValidity time.Duration) error {
	usages, err := certutil.UsagesFor(p, pub)
	if err != nil {
		return err
	}
	policy.Profiles[profileName(p, pub)] = &cfconfig.SigningProfile{
		Usage:  cfsslUsages(usages),
		Expiry: defaultValidity,
		CSRWhitelist: &cfconfig.CSRWhitelist{
			PublicKeyAlgorithm: true, PublicKey: true, SignatureAlgorithm: true,
			DNSNames: true, IPAddresses: true, URIs: true,
		},
	}
	return nil
}

// cfsslUsages names usages the way cfssl's config does.
func cfsslUsages(u certutil.Usages) []string {
	var names []string
	if u.Key&x509.KeyUsageDigitalSignature != 0 {
		names = append(names, "digital signature")
	}
	if u.Key&x509.KeyUsageKeyEncipherment != 0 {
		names = append(names, "key encipherment")
	}
	for _, e := range u.Extended {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			names = append(names, "server auth")
		case x509.ExtKeyUsageClientAuth:
			names = append(names, "client auth")
		}
	}
	return names
}

// authority returns the loaded CA, loading or creating it on first use.
func (b *Backend) authority() (*authority, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.configured {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, Name, "Configure has not been called")
	}
	if b.ca != nil {
		return b.ca, nil
	}
	ca, created, err := loadOrCreateCA(b.dir, b.settings.CACommonName, b.settings.CAValidity)
	if err != nil {
		return nil, err
	}
	policy, err := signingPolicy(b.settings.DefaultValidity)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, Name, "%v", err)
	}
	s, err := local.NewSigner(ca.key, ca.cert, signer.DefaultSigAlgo(ca.key), policy)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, b.dir, "cfssl signer: %v", err)
	}
	ca.signer = s
	if created {
		b.log.Info("created CA", "dir", b.dir, "subject", ca.cert.Subject.String(), "not_after", ca.cert.NotAfter)
	} else {
		b.log.Info("loaded CA", "dir", b.dir, "subject", ca.cert.Subject.String())
	}
	b.ca = ca
	return ca, nil
}

// SignCRL implements sdk.CRLSigner with the CA in Dir.
func (b *Backend) SignCRL(_ context.Context, req sdk.CRLRequest) (sdk.CRL, error) {
	ca, err := b.authority()
	if err != nil {
		return sdk.CRL{}, err
	}
	pemBytes, err := certutil.NewCRL(ca.cert, ca.key, req)
	if err != nil {
		return sdk.CRL{}, err
	}
	return sdk.CRL{PEM: pemBytes}, nil
}

// SignCSRs implements sdk.BatchSigner: the batch is signed on every core (cfssl's
// signer is safe for concurrent use).
func (b *Backend) SignCSRs(ctx context.Context, reqs []sdk.SignRequest) ([]sdk.SignResult, error) {
	return sdk.SignInParallel(ctx, b.SignCSR, reqs), nil
}
