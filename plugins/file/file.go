// Package file is the tlsrelay secrets backend that reads files: a reference is an
// absolute path to a PEM file (a certificate, its key, and any intermediates and root,
// in any order; PKCS#7 intermediates too) or a PKCS#12 file, read with the parsing the
// Barbican backend uses (secretparse). It brings a CA from disk, or from a
// configuration-management tool, as ca.ref: `roles: {secrets: file}` and `ca.ref:
// /etc/tlsrelay/group-ca.pem`. A file that holds a key is held to the rule of every
// secret file (sdk/safedir.ReadSecret: mode 0600 or stricter, this user's or root's);
// errors name the file. It only reads: storing and deleting are Unimplemented.
package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tlsrelay/tlsrelay/plugins/internal/secretparse"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// Name is the backend's name in configuration.
const Name = "file"

// Version is reported by Info: the build of tlsrelay that serves it.
var Version = "dev"

// Config is the backend's `config:` section.
type Config struct {
	// PKCS12PasswordFile holds the password of PKCS#12 files (a secret file itself);
	// empty: they have none, as Octavia stores them.
	PKCS12PasswordFile string `json:"pkcs12_password_file"`
}

// Backend reads secrets from files.
type Backend struct {
	sdk.Unimplemented
	mu     sync.Mutex
	config Config
}

// New returns the backend, configured with defaults.
func New() *Backend { return &Backend{} }

func (b *Backend) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: Name, Version: Version, Capabilities: []sdk.Capability{sdk.CapFetchSecret}}, nil
}

func (b *Backend) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	var c Config
	if len(bytes.TrimSpace(req.ConfigJSON)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(req.ConfigJSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return sdk.Errorf(sdk.CodeInvalidArgument, "", "file backend config: %v", err)
		}
	}
	if c.PKCS12PasswordFile != "" && !filepath.IsAbs(c.PKCS12PasswordFile) {
		return sdk.Errorf(sdk.CodeInvalidArgument, "", "file backend config: pkcs12_password_file %q is not an absolute path", c.PKCS12PasswordFile)
	}
	b.mu.Lock()
	b.config = c
	b.mu.Unlock()
	return nil
}

// FetchSecret reads the file ref names.
func (b *Backend) FetchSecret(_ context.Context, ref string) (sdk.Secret, error) {
	if !filepath.IsAbs(ref) {
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "a file reference is an absolute path")
	}
	data, err := safedir.ReadSecret(ref)
	if err != nil {
		return sdk.Secret{}, readError(ref, err)
	}
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return secretparse.FromPEMBundle(ref, data)
	}
	b.mu.Lock()
	passwordFile := b.config.PKCS12PasswordFile
	b.mu.Unlock()
	password := ""
	if passwordFile != "" {
		p, err := safedir.ReadSecret(passwordFile)
		if err != nil {
			return sdk.Secret{}, readError(passwordFile, err)
		}
		password = strings.TrimRight(string(p), "\r\n")
	}
	return secretparse.FromPKCS12WithPassword(ref, data, password)
}

// readError classifies a failure to read path: missing is NotFound, unreadable to this
// user PermissionDenied; a file the secret-file rule refuses (another user's, readable by
// others) is InvalidArgument with safedir's reason and remedy.
func readError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sdk.Errorf(sdk.CodeNotFound, path, "no such file")
	case errors.Is(err, fs.ErrPermission):
		return sdk.Errorf(sdk.CodePermissionDenied, path, "%v", err)
	}
	return sdk.Errorf(sdk.CodeInvalidArgument, path, "%v", err)
}
