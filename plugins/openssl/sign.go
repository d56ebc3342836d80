package openssl

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// CA implements sdk.Backend: it loads the CA from Dir, creating it on first use.
func (b *Backend) CA(ctx context.Context) (sdk.CA, error) {
	caPEM, err := b.authority(ctx)
	if err != nil {
		return sdk.CA{}, err
	}
	return sdk.CA{BundlePEM: caPEM}, nil
}

// ExportCA implements sdk.Backend: the CA in Dir, created on first use.
func (b *Backend) ExportCA(ctx context.Context) (sdk.CAKeyPair, error) {
	if _, err := b.authority(ctx); err != nil {
		return sdk.CAKeyPair{}, err
	}
	return castore.ExportCA(b.dir)
}

// ImportCA implements sdk.Backend: the CA replaces the one in Dir and signs from now on.
func (b *Backend) ImportCA(_ context.Context, ca sdk.CAKeyPair) error {
	if _, err := b.state(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := castore.ImportCA(b.dir, ca); err != nil {
		return err
	}
	b.caPEM = nil
	return nil
}

// authority returns the CA certificate, creating the CA on first use.
func (b *Backend) authority(ctx context.Context) ([]byte, error) {
	t, err := b.state()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.caPEM != nil {
		return b.caPEM, nil
	}
	stored, created, err := castore.LoadOrCreate(b.dir, func() (castore.CA, error) {
		return createCA(ctx, t, b.settings.CACommonName, b.settings.CAValidity)
	})
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, b.dir, "%v", err)
	}
	if created {
		b.log.Info("created CA", "dir", b.dir, "common_name", b.settings.CACommonName)
	}
	b.caPEM = stored.CertPEM
	return b.caPEM, nil
}

// createCA makes an ECDSA P-256 CA key (through a pipe) and its self-signed certificate.
func createCA(ctx context.Context, t tool, cn string, validity time.Duration) (castore.CA, error) {
	keyPEM, err := t.run(ctx, nil, append([]string{"genpkey"}, keyArgs(sdk.KeySpec{Algorithm: "ecdsa", Size: 256})...)...)
	if err != nil {
		return castore.CA{}, err
	}
	serial, err := randomSerial()
	if err != nil {
		return castore.CA{}, err
	}
	certPEM, err := t.runWithFile(ctx, keyPEM, reqConfig, "req", "-x509", "-new", "-key", "/dev/stdin",
		"-config", fd3, "-utf8", "-subj", subject(cn), "-set_serial", serial,
		"-days", fmt.Sprint(certutil.Days(validity)), "-sha256",
		"-addext", "basicConstraints=critical,CA:TRUE",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign",
		"-addext", "subjectKeyIdentifier=hash")
	if err != nil {
		return castore.CA{}, err
	}
	return castore.CA{CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// SignCSR implements sdk.Backend. The CSR is parsed and checked in Go first, so a bad
// one is InvalidArgument with a reason; the certificate's extensions come from the
// profile and the CSR's checked SANs, never from the CSR's own extensions.
func (b *Backend) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	t, err := b.state()
	if err != nil {
		return sdk.Certificate{}, err
	}
	plan, err := certutil.CheckSignRequest(req, b.settings.DefaultValidity)
	if err != nil {
		return sdk.Certificate{}, err
	}
	ext, err := extensions(plan.CSR, plan.Usages, req.Unit)
	if err != nil {
		return sdk.Certificate{}, err
	}
	if _, err := b.authority(ctx); err != nil {
		return sdk.Certificate{}, err
	}
	serial, err := randomSerial()
	if err != nil {
		return sdk.Certificate{}, sdk.Errorf(sdk.CodeInternal, req.Unit, "serial: %v", err)
	}
	caCert, caKey := castore.Paths(b.dir)
	certPEM, err := t.runWithFile(ctx, req.CSRPEM, ext, "x509", "-req",
		"-CA", caCert, "-CAkey", caKey, "-set_serial", serial,
		"-utf8", "-subj", subject(plan.CSR.Subject.CommonName), // the subject rebuilt from the CN alone
		"-days", fmt.Sprint(certutil.Days(plan.Validity)), "-sha256",
		"-extfile", fd3, "-extensions", "v3")
	if err != nil {
		return sdk.Certificate{}, err
	}
	return sdk.Certificate{ChainPEM: certPEM}, nil
}

// extensions is the x509 -extfile for one certificate.
func extensions(csr *x509.CertificateRequest, u certutil.Usages, unit string) ([]byte, error) {
	sans, err := certutil.ToolSANs(csr, unit)
	if err != nil {
		return nil, err
	}
	lines := []string{
		"[v3]",
		"basicConstraints = critical,CA:FALSE",
		"keyUsage = critical," + keyUsageNames(u.Key),
		"extendedKeyUsage = " + extUsageNames(u.Extended),
		"subjectKeyIdentifier = hash",
		"authorityKeyIdentifier = keyid",
	}
	if len(sans) > 0 {
		lines = append(lines, "subjectAltName = "+strings.Join(sans, ","))
	}
	return []byte(strings.Join(lines, "\n") + "\n"), nil
}

func keyUsageNames(k x509.KeyUsage) string {
	var names []string
	if k&x509.KeyUsageDigitalSignature != 0 {
		names = append(names, "digitalSignature")
	}
	if k&x509.KeyUsageKeyEncipherment != 0 {
		names = append(names, "keyEncipherment")
	}
	return strings.Join(names, ",")
}

func extUsageNames(eku []x509.ExtKeyUsage) string {
	var names []string
	for _, e := range eku {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			names = append(names, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			names = append(names, "clientAuth")
		}
	}
	return strings.Join(names, ",")
}
