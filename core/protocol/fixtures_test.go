package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"maps"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// now is the fixed clock of every table test.
var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type testCA struct{ pkitest.CA }

func newCA(t testing.TB, cn string) testCA { return testCA{pkitest.NewCA(t, cn, now)} }

func newKey(t testing.TB) *ecdsa.PrivateKey { return pkitest.NewKey(t) }

func csrFor(t testing.TB, key crypto.Signer, cn string, dns ...string) string {
	return pkitest.CSR(t, key, cn, dns...)
}

// certOpts shapes a leaf certificate; zero times mean from an hour before now to 30 days on.
type certOpts struct {
	cn        string
	dns       []string
	notBefore time.Time
	notAfter  time.Time
}

func (ca testCA) sign(t testing.TB, pub crypto.PublicKey, o certOpts) (*x509.Certificate, string) {
	if o.notBefore.IsZero() {
		o.notBefore = now.Add(-time.Hour)
	}
	return ca.Issue(t, pub, pkitest.Leaf{CN: o.cn, DNS: o.dns, NotBefore: o.notBefore, NotAfter: o.notAfter})
}

// merged is base with the pairs key, value, ... set on a copy.
func merged(base map[string]string, kv ...string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// day is the validity the table tests' units ask for.
const day = 24 * time.Hour

// exportable is what the built-in signers claim of their CA.
var exportable = SignerTerms{Custody: sdk.CustodyExportable, Exports: true, Imports: true}
