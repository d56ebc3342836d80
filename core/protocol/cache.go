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

// memos is c, or for a nil Cache one whose memos are nil and so remember nothing.
func (c *Cache) memos() *Cache {
	if c == nil {
		return &noCache
	}
	return c
}

// noCache is the Cache of none: its memos are nil, and it is never written.
var noCache Cache
