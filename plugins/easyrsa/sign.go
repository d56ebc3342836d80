package easyrsa

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// certTypes maps profiles to easy-rsa's x509 types.
var certTypes = map[sdk.Profile]string{
	sdk.ProfileServer: "server",
	sdk.ProfileClient: "client",
	sdk.ProfilePeer:   "serverClient",
}

// CA implements sdk.Backend: the PKI's ca.crt, after init-pki and build-ca on first use.
func (b *Backend) CA(ctx context.Context) (sdk.CA, error) {
	var caPEM []byte
	err := b.withPKI(ctx, func(t tool) error {
		var err error
		caPEM, err = b.ensureCA(ctx, t)
		return err
	})
	return sdk.CA{BundlePEM: caPEM}, err
}

// withPKI runs fn with the PKI locked against this process's other calls and against
// other processes sharing the directory.
func (b *Backend) withPKI(ctx context.Context, fn func(tool) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.configured {
		return sdk.Errorf(sdk.CodeFailedPrecondition, Name, "Configure has not been called")
	}
	parent := filepath.Dir(b.pki)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, parent, "%v", err)
	}
	unlock, err := castore.Lock(parent)
	if err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, parent, "%v", err)
	}
	defer unlock()
	return fn(b.tool)
}

// ensureCA initialises the PKI and builds the CA if either is missing. Called under withPKI.
func (b *Backend) ensureCA(ctx context.Context, t tool) ([]byte, error) {
	if b.caPEM != nil {
		return b.caPEM, nil
	}
	caPath := filepath.Join(b.pki, "ca.crt")
	caPEM, err := os.ReadFile(caPath)
	if errors.Is(err, fs.ErrNotExist) {
		if caPEM, err = b.buildCA(ctx, t); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, caPath, "%v", err)
	}
	b.caPEM = caPEM
	return caPEM, nil
}

func (b *Backend) buildCA(ctx context.Context, t tool) ([]byte, error) {
	// init-pki only on a PKI that does not exist: in batch mode it would wipe one.
	if _, err := os.Stat(filepath.Join(b.pki, "private")); errors.Is(err, fs.ErrNotExist) {
		if _, err := t.run(ctx, b.pki, nil, "init-pki"); err != nil {
			return nil, err
		}
	}
	if err := writeTypes(b.pki); err != nil {
		return nil, err
	}
	vars := keyVars(sdk.KeySpec{Algorithm: "ecdsa", Size: 256})
	vars["EASYRSA_REQ_CN"] = b.settings.CACommonName
	vars["EASYRSA_CA_EXPIRE"] = strconv.Itoa(certutil.Days(b.settings.CAValidity))
	if _, err := t.run(ctx, b.pki, vars, "build-ca", "nopass"); err != nil {
		return nil, err
	}
	b.log.Info("created CA", "pki", b.pki, "common_name", b.settings.CACommonName)
	return os.ReadFile(filepath.Join(b.pki, "ca.crt"))
}

// SignCSR implements sdk.Backend: import-req under a unique safe name, then sign-req.
func (b *Backend) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	plan, err := certutil.CheckSignRequest(req, b.settings.DefaultValidity)
	if err != nil {
		return sdk.Certificate{}, err
	}
	sans, err := certutil.ToolSANs(plan.CSR, req.Unit)
	if err != nil {
		return sdk.Certificate{}, err
	}
	var args []string
	if len(sans) > 0 {
		args = []string{"--subject-alt-name=" + strings.Join(sans, ",")}
	}
	var cert []byte
	err = b.withPKI(ctx, func(t tool) error {
		if _, err := b.ensureCA(ctx, t); err != nil {
			return err
		}
		if err := subjectFromCNOnly(b.pki); err != nil {
			return err
		}
		cert, err = b.sign(ctx, t, req, args, plan)
		return err
	})
	return sdk.Certificate{ChainPEM: cert}, err
}

// policyAnything is the DN policy of easy-rsa's openssl-easyrsa.cnf, which keeps a
// CSR's O, OU and other fields; cnOnly replaces it, so that `openssl ca` rebuilds the
// subject from the common name alone, as every backend does.
var (
	policyAnything = regexp.MustCompile(`(?ms)^\[ *policy_anything *\].*?(^\[|\z)`)
	cnOnly         = "[ policy_anything ]\n# tlsrelay: the subject is the common name alone\ncommonName = supplied\n\n"
)

// subjectFromCNOnly makes the PKI's openssl config keep only the common name of a
// request's subject. Called under withPKI.
func subjectFromCNOnly(pki string) error {
	conf := filepath.Join(pki, "openssl-easyrsa.cnf")
	text, err := os.ReadFile(conf)
	if err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, conf, "%v", err)
	}
	if strings.Contains(string(text), cnOnly) {
		return nil
	}
	loc := policyAnything.FindSubmatchIndex(text)
	if loc == nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, conf, "no [ policy_anything ] section to restrict to the common name")
	}
	out := append(append(append([]byte{}, text[:loc[0]]...), cnOnly...), text[loc[2]:]...)
	if err := os.WriteFile(conf, out, 0o600); err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, conf, "%v", err)
	}
	return nil
}

// sign imports and signs one request. Called under withPKI.
func (b *Backend) sign(ctx context.Context, t tool, req sdk.SignRequest, sanArgs []string, plan certutil.SignPlan) ([]byte, error) {
	validity := plan.Validity
	name, err := requestName(req.Unit)
	if err != nil {
		return nil, err
	}
	csrFile := filepath.Join(filepath.Dir(b.pki), name+".csr")
	if err := os.WriteFile(csrFile, req.CSRPEM, 0o600); err != nil {
		return nil, sdk.Errorf(sdk.CodeFailedPrecondition, csrFile, "%v", err)
	}
	defer os.Remove(csrFile)
	if _, err := t.run(ctx, b.pki, nil, "import-req", csrFile, name); err != nil {
		return nil, err
	}
	defer os.Remove(filepath.Join(b.pki, "reqs", name+".req"))
	vars := map[string]string{"EASYRSA_CERT_EXPIRE": strconv.Itoa(certutil.Days(validity))}
	if err := writeTypes(b.pki); err != nil { // a PKI an earlier version made has none
		return nil, err
	}
	if _, err := t.run(ctx, b.pki, vars, append(sanArgs, "sign-req", certType(req.Profile, plan.CSR.PublicKey), name)...); err != nil {
		return nil, err
	}
	issued := filepath.Join(b.pki, "issued", name+".crt")
	text, err := os.ReadFile(issued)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, issued, "sign-req left no certificate: %v", err)
	}
	return pemOnly(text, issued)
}

// requestName is a unit's name made safe for easy-rsa's file names ("db/0" -> "db-0"),
// with a random suffix so that re-sent CSRs never collide with earlier requests.
func requestName(unit string) (string, error) {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, unit)
	if safe == "" {
		safe = "csr"
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return "", sdk.Errorf(sdk.CodeInternal, unit, "random name: %v", err)
	}
	return fmt.Sprintf("%.40s-%s", safe, hex.EncodeToString(suffix)), nil
}

// pemOnly drops the text dump easy-rsa writes before the certificate.
func pemOnly(text []byte, file string) ([]byte, error) {
	block, _ := pem.Decode(text)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, sdk.Errorf(sdk.CodeInternal, file, "no PEM certificate in sign-req's output")
	}
	return pem.EncodeToMemory(block), nil
}
