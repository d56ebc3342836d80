package protocol

import (
	"crypto/x509"

	"github.com/tlsrelay/tlsrelay/internal/memo"
)

// Cache remembers what deciding parsed and verified, by content: certificates and
// bundles, CRLs, chains that verified (with the window in which they hold), signatures,
// and CSRs whose PEM and signature passed. A leader re-deciding for N units would
// otherwise parse and verify every certificate and CSR again at every decision.
//
// It is no state of the group and changes no decision: the same View gives the same
// Decision with a warm Cache, a cold one or none (TestDecideIsPure). The caller owns it
// and passes it in View.Cache (an agent process shares one among its units); a nil
// Cache remembers nothing. Safe for concurrent use.
type Cache struct {
	certs      *memo.Memo[[]*x509.Certificate]
	crls       *memo.Memo[*x509.RevocationList]
	chains     *memo.Memo[window]
	signatures *memo.Memo[bool]
	csrs       *memo.Memo[*x509.CertificateRequest]
}

// NewCache returns an empty Cache, sized for a process of a few thousand units (each
// memo forgets everything when full, which costs one recomputation per entry).
func NewCache() *Cache {
	return &Cache{
		certs:      memo.New[[]*x509.Certificate](16384),
		crls:       memo.New[*x509.RevocationList](64),
		chains:     memo.New[window](16384),
		signatures: memo.New[bool](16384),
		csrs:       memo.New[*x509.CertificateRequest](16384),
	}
}

// The memos of c; nil (remembering nothing) for a nil Cache.

func (c *Cache) certMemo() *memo.Memo[[]*x509.Certificate] {
	if c == nil {
		return nil
	}
	return c.certs
}

func (c *Cache) crlMemo() *memo.Memo[*x509.RevocationList] {
	if c == nil {
		return nil
	}
	return c.crls
}

func (c *Cache) chainMemo() *memo.Memo[window] {
	if c == nil {
		return nil
	}
	return c.chains
}

func (c *Cache) signatureMemo() *memo.Memo[bool] {
	if c == nil {
		return nil
	}
	return c.signatures
}

func (c *Cache) csrMemo() *memo.Memo[*x509.CertificateRequest] {
	if c == nil {
		return nil
	}
	return c.csrs
}
