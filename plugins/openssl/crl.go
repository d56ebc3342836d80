package openssl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/castore"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// crlVersion is the oldest OpenSSL whose `ca -gencrl` takes the update times asked for
// (-crl_lastupdate, -crl_nextupdate).
var crlVersion = [3]int{3, 0, 0}

// SignCRL implements sdk.CRLSigner with `openssl ca -gencrl`. openssl reads revocations
// only from a CA database, so the request is written as one (index.txt, crlnumber) in a
// directory of its own under Dir, removed after: it holds serials, never a key. The
// configuration goes through a pipe.
func (b *Backend) SignCRL(ctx context.Context, req sdk.CRLRequest) (sdk.CRL, error) {
	t, err := b.state()
	if err != nil {
		return sdk.CRL{}, err
	}
	if compare(t.version, crlVersion) < 0 {
		return sdk.CRL{}, sdk.Errorf(sdk.CodeFailedPrecondition, t.path, "signing a CRL needs OpenSSL %d.%d.%d or newer", crlVersion[0], crlVersion[1], crlVersion[2])
	}
	if err := certutil.CheckCRLRequest(req); err != nil {
		return sdk.CRL{}, err
	}
	if _, err := b.authority(ctx); err != nil {
		return sdk.CRL{}, err
	}
	db, err := os.MkdirTemp(b.dir, "crl-")
	if err != nil {
		return sdk.CRL{}, sdk.Errorf(sdk.CodeInternal, b.dir, "CRL database: %v", err)
	}
	defer os.RemoveAll(db)
	if err := writeDatabase(db, req); err != nil {
		return sdk.CRL{}, err
	}
	caCert, caKey := castore.Paths(b.dir)
	crlPEM, err := t.runWithFile(ctx, nil, crlConfig(db), "ca", "-gencrl", "-batch", "-config", fd3,
		"-cert", caCert, "-keyfile", caKey, "-md", "sha256",
		"-crl_lastupdate", generalizedTime(req.ThisUpdate), "-crl_nextupdate", generalizedTime(req.NextUpdate))
	if err != nil {
		return sdk.CRL{}, err
	}
	if _, err := certutil.ParseCRL(crlPEM); err != nil {
		return sdk.CRL{}, sdk.Errorf(sdk.CodeInternal, "openssl ca -gencrl", "its output: %v", err)
	}
	return sdk.CRL{PEM: crlPEM}, nil
}

// writeDatabase writes req as an openssl CA database: one revoked ("R") line per serial,
// and the CRL number.
func writeDatabase(dir string, req sdk.CRLRequest) error {
	var index strings.Builder
	for _, r := range req.Revoked { // checked by certutil.CheckCRLRequest
		// The expiry column is not read by -gencrl; the subject column must be present.
		fmt.Fprintf(&index, "R\t491231235959Z\t%s\t%s\tunknown\t/CN=revoked\n", utcTime(r.RevokedAt), evenHex(r.Serial.Text(16)))
	}
	files := map[string]string{
		"index.txt": index.String(),
		"crlnumber": evenHex(req.Number.Text(16)) + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return sdk.Errorf(sdk.CodeInternal, dir, "CRL database: %v", err)
		}
	}
	return nil
}

func crlConfig(db string) []byte {
	return fmt.Appendf(nil, `[ca]
default_ca = group
[group]
database = %s
crlnumber = %s
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
`, filepath.Join(db, "index.txt"), filepath.Join(db, "crlnumber"))
}

// evenHex is a serial as openssl's database writes it: upper case, an even number of digits.
func evenHex(h string) string {
	if len(h)%2 == 1 {
		h = "0" + h
	}
	return strings.ToUpper(h)
}

func utcTime(t time.Time) string { return t.UTC().Format("060102150405Z") }

func generalizedTime(t time.Time) string { return t.UTC().Format("20060102150405Z") }
