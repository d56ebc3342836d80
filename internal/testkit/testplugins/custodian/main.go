// Command custodian is a signer plugin whose CA key does not move between leaders, for
// the host's custody tests: it keeps the CA in a directory every unit's copy reaches
// (config ca_dir), as a network HSM or a shared token would, and claims the custody its
// config names. It neither exports nor imports its CA.
//
//	custody: shared   claims ca_shared; with generate: true it also makes its next
//	                  CA itself (ca_generate), in ca_dir, for every leader at once
//	custody: remote   claims ca_remote; the test moves the "service" to another CA by
//	                  rewriting ca_dir
//	custody: local    claims nothing about its CA (a signer that cannot rotate)
//
//	want_validity: 2h  refuses Configure unless the host tells it exactly this validity
//	                  (certificate.validity), as a signer with a fixed lifetime does
//
//	spoil: local-cert-generator  signs as Octavia's LocalCertGenerator does: the
//	                  CSR's subject copied, its SANs dropped, server and client usages
//	                  whatever the profile (the leader must publish none of it)
//
// Every call reads the CA from ca_dir again, so all copies see a move at once.
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"os"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

type config struct {
	CADir    string `json:"ca_dir"`
	Custody  string `json:"custody"`
	Generate bool   `json:"generate"`
	Spoil    string `json:"spoil"`
	// WantValidity, if set, is the only validity Configure accepts.
	WantValidity string `json:"want_validity"`
}

type custodian struct {
	sdk.Unimplemented
	cfg config
}

func (c *custodian) Info(context.Context) (sdk.Info, error) {
	caps := []sdk.Capability{sdk.CapSignCSR, sdk.CapCA}
	switch c.cfg.Custody {
	case "shared":
		caps = append(caps, sdk.CapCAShared)
	case "remote":
		caps = append(caps, sdk.CapCARemote)
	}
	if c.cfg.Generate {
		caps = append(caps, sdk.CapCAGenerate)
	}
	return sdk.Info{Name: "custodian", Version: "0.0.1", Capabilities: caps}, nil
}

// Info is asked before Configure: the host launches a plugin, reads Info, then
// configures it. The capabilities come from the environment's copy of the config
// for that reason (CUSTODIAN_CUSTODY, CUSTODIAN_GENERATE), which the host passes only
// when the plugin's env lists them; Configure checks that the two agree.
func (c *custodian) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	var cfg config
	if err := sdk.DecodeConfig(req.ConfigJSON, &cfg); err != nil {
		return err
	}
	if cfg.CADir == "" {
		return sdk.Errorf(sdk.CodeInvalidArgument, "ca_dir", "ca_dir is required")
	}
	if cfg.WantValidity != "" {
		want, err := time.ParseDuration(cfg.WantValidity)
		if err != nil {
			return sdk.Errorf(sdk.CodeInvalidArgument, "want_validity", "%v", err)
		}
		if req.Validity != want {
			return sdk.Errorf(sdk.CodeInvalidArgument, "want_validity", "the host told a validity of %s, this signer signs for %s", req.Validity, want)
		}
	}
	if cfg.Custody != c.cfg.Custody || cfg.Generate != c.cfg.Generate {
		return sdk.Errorf(sdk.CodeInvalidArgument, "custody", "config says custody %q generate %t, the environment %q %t",
			cfg.Custody, cfg.Generate, c.cfg.Custody, c.cfg.Generate)
	}
	c.cfg = cfg
	return nil
}

func (c *custodian) load() (castore.CA, error) {
	ca, _, err := castore.LoadOrCreate(c.cfg.CADir, func() (castore.CA, error) {
		cert, key, err := certutil.NewCA("custodian CA", 365*24*time.Hour)
		return castore.CA{CertPEM: cert, KeyPEM: key}, err
	})
	if err != nil {
		return castore.CA{}, sdk.Errorf(sdk.CodeUnavailable, c.cfg.CADir, "%v", err)
	}
	return ca, nil
}

func (c *custodian) CA(context.Context) (sdk.CA, error) {
	ca, err := c.load()
	return sdk.CA{BundlePEM: ca.CertPEM}, err
}

func (c *custodian) SignCSR(_ context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	plan, err := certutil.CheckSignRequest(req, 24*time.Hour)
	if err != nil {
		return sdk.Certificate{}, err
	}
	stored, err := c.load()
	if err != nil {
		return sdk.Certificate{}, err
	}
	cert, key, err := stored.Parse()
	if err != nil {
		return sdk.Certificate{}, sdk.Errorf(sdk.CodeInternal, c.cfg.CADir, "%v", err)
	}
	sign := plan.Sign
	if c.cfg.Spoil == "local-cert-generator" {
		sign = func(ca *x509.Certificate, key crypto.Signer) ([]byte, error) {
			return localCertGenerator(plan, ca, key)
		}
	}
	chain, err := sign(cert, key)
	if err != nil {
		return sdk.Certificate{}, sdk.Errorf(sdk.CodeInternal, req.Unit, "%v", err)
	}
	return sdk.Certificate{ChainPEM: chain}, nil
}

// localCertGenerator signs as Octavia's LocalCertGenerator.sign_cert does: the CSR's
// subject as it is, no SANs, both usages.
func localCertGenerator(plan certutil.SignPlan, ca *x509.Certificate, key crypto.Signer) ([]byte, error) {
	serial, err := certutil.RandomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, RawSubject: plan.CSR.RawSubject,
		NotBefore: now.Add(-certutil.Backdate), NotAfter: now.Add(plan.Validity), BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, plan.CSR.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return certutil.CertPEM(der), nil
}

// custodianGenerator adds GenerateCA when the config asks for it.
type custodianGenerator struct{ *custodian }

func (g custodianGenerator) GenerateCA(_ context.Context, req sdk.GenerateCARequest) (sdk.CA, error) {
	cert, key, err := certutil.NewCA(req.CommonName, req.Validity)
	if err != nil {
		return sdk.CA{}, sdk.Errorf(sdk.CodeInvalidArgument, req.CommonName, "%v", err)
	}
	if err := castore.Replace(g.cfg.CADir, castore.CA{CertPEM: cert, KeyPEM: key}); err != nil {
		return sdk.CA{}, sdk.Errorf(sdk.CodeUnavailable, g.cfg.CADir, "%v", err)
	}
	return sdk.CA{BundlePEM: cert}, nil
}

func main() {
	c := &custodian{cfg: config{Custody: os.Getenv("CUSTODIAN_CUSTODY"), Generate: os.Getenv("CUSTODIAN_GENERATE") == "true"}}
	if c.cfg.Generate {
		sdk.Serve(custodianGenerator{c})
		return
	}
	sdk.Serve(c)
}
