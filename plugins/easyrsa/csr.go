package easyrsa

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// reqName is the request name gen-req uses inside the throwaway PKI.
const reqName = "req"

// CreateCSR implements sdk.Backend with gen-req in a throwaway PKI (mode 0700, removed
// on return), so no key stays behind in any easy-rsa directory. EASYRSA_REQ_CN is set
// for this one command only.
func (b *Backend) CreateCSR(ctx context.Context, req sdk.CSRRequest) (sdk.CSR, error) {
	t, scratch, err := b.csrState()
	if err != nil {
		return sdk.CSR{}, err
	}
	if err := certutil.CheckCSRRequest(req); err != nil {
		return sdk.CSR{}, err
	}
	args, err := sanArgs(req.SANs, req.CommonName)
	if err != nil {
		return sdk.CSR{}, err
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeFailedPrecondition, scratch, "%v", err)
	}
	dir, err := os.MkdirTemp(scratch, "csr-")
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeFailedPrecondition, scratch, "%v", err)
	}
	defer os.RemoveAll(dir)
	pki := filepath.Join(dir, "pki")
	if _, err := t.run(ctx, pki, nil, "init-pki"); err != nil {
		return sdk.CSR{}, err
	}
	vars := keyVars(req.Key)
	vars["EASYRSA_REQ_CN"] = req.CommonName
	if _, err := t.run(ctx, pki, vars, append(args, "gen-req", reqName, "nopass")...); err != nil {
		return sdk.CSR{}, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(pki, "private", reqName+".key"))
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInternal, "easyrsa gen-req", "no key: %v", err)
	}
	csrPEM, err := os.ReadFile(filepath.Join(pki, "reqs", reqName+".req"))
	if err != nil {
		return sdk.CSR{}, sdk.Errorf(sdk.CodeInternal, "easyrsa gen-req", "no request: %v", err)
	}
	return sdk.CSR{CSRPEM: csrPEM, Key: keyPEM}, nil
}

func (b *Backend) csrState() (tool, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.configured {
		return tool{}, "", sdk.Errorf(sdk.CodeFailedPrecondition, Name, "Configure has not been called")
	}
	return b.tool, b.scratch, nil
}

// sanArgs is the --subject-alt-name option for checked SANs (none for no SANs).
func sanArgs(sans []string, ref string) ([]string, error) {
	if len(sans) == 0 {
		return nil, nil
	}
	parts := make([]string, 0, len(sans))
	dns, ips := certutil.SplitSANs(sans)
	for _, d := range dns {
		if err := certutil.CheckSAN(d, ref); err != nil {
			return nil, err
		}
		parts = append(parts, "DNS:"+d)
	}
	for _, ip := range ips {
		parts = append(parts, "IP:"+ip.String())
	}
	return []string{"--subject-alt-name=" + strings.Join(parts, ",")}, nil
}
