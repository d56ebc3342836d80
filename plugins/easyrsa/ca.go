package easyrsa

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// ExportCA implements sdk.Backend: the PKI's ca.crt and private/ca.key, built on first use.
func (b *Backend) ExportCA(ctx context.Context) (sdk.CAKeyPair, error) {
	var ca sdk.CAKeyPair
	err := b.withPKI(ctx, func(t tool) error {
		certPEM, err := b.ensureCA(ctx, t)
		if err != nil {
			return err
		}
		keyPath := filepath.Join(b.pki, "private", "ca.key")
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, keyPath, "%v", err)
		}
		ca = sdk.CAKeyPair{CertPEM: certPEM, Key: keyPEM}
		return nil
	})
	return ca, err
}

// ImportCA implements sdk.Backend: the PKI is initialised if it is not, and the CA
// replaces its ca.crt and private/ca.key, with the database files build-ca would make.
func (b *Backend) ImportCA(ctx context.Context, ca sdk.CAKeyPair) error {
	if _, err := certutil.CheckCAKeyPair(ca); err != nil {
		return err
	}
	return b.withPKI(ctx, func(t tool) error {
		if _, err := os.Stat(filepath.Join(b.pki, "private")); errors.Is(err, fs.ErrNotExist) {
			if _, err := t.run(ctx, b.pki, nil, "init-pki"); err != nil {
				return err
			}
		}
		for _, dir := range []string{"issued", "certs_by_serial", "revoked/certs_by_serial",
			"revoked/private_by_serial", "revoked/reqs_by_serial"} {
			if err := os.MkdirAll(filepath.Join(b.pki, dir), 0o700); err != nil {
				return sdk.Errorf(sdk.CodeFailedPrecondition, b.pki, "%v", err)
			}
		}
		for name, content := range map[string]string{"index.txt": "", "index.txt.attr": "", "serial": "01\n"} {
			path := filepath.Join(b.pki, name)
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					return sdk.Errorf(sdk.CodeFailedPrecondition, path, "%v", err)
				}
			}
		}
		keyPath := filepath.Join(b.pki, "private", "ca.key")
		if err := atomicfile.Write(keyPath, ca.Key, 0o600); err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, keyPath, "%v", err)
		}
		certPath := filepath.Join(b.pki, "ca.crt")
		if err := atomicfile.Write(certPath, ca.CertPEM, 0o644); err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, certPath, "%v", err)
		}
		b.caPEM = nil
		b.log.Info("imported CA", "pki", b.pki)
		return nil
	})
}
