package protocol

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// names lists the common names of the certificates in pemText, in order.
func names(t *testing.T, pemText string) string {
	t.Helper()
	certs, err := certutil.ParseCertificates([]byte(pemText))
	if err != nil {
		t.Fatalf("%v in %q", err, pemText)
	}
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return strings.Join(out, " ")
}

// A group CA under an enterprise root (root -> int1 -> int2, int2 signing): ca.crt is the
// root when it is known, else the topmost certificate known (partial); tls.crt carries
// the leaf and every certificate short of the root; the chain published is what lies
// between; a root's ca.crt trusts the signing CA too.
func TestChainFilesOfAGroupUnderAnIntermediate(t *testing.T) {
	root := newCA(t, "root")
	int1 := testCA{root.Intermediate(t, "int1")}
	int2 := testCA{int1.Intermediate(t, "int2")}
	own := newCA(t, "own")
	_, leaf := int2.sign(t, newKey(t).Public(), certOpts{cn: "db/0"})
	_, ownLeaf := own.sign(t, newKey(t).Public(), certOpts{cn: "db/0"})
	for _, tt := range []struct {
		name                  string
		bundle, chain, signed string
		caFile, tlsCrt        string
		partial               bool
	}{
		{"root known", int2.PEM, int1.PEM + root.PEM, leaf, "root", "db/0 int2 int1", false},
		{"root unknown", int2.PEM, int1.PEM, leaf, "int1", "db/0 int2 int1", true},
		{"no chain known", int2.PEM, "", leaf, "int2", "db/0 int2", true},
		{"chain out of order", int2.PEM, root.PEM + int1.PEM, leaf, "root", "db/0 int2 int1", false},
		{"a self-signed CA", own.PEM, "", ownLeaf, "own", "db/0", false},
		{"a rotation from own to int2", own.PEM + int2.PEM, int1.PEM + root.PEM, leaf, "own root", "db/0 int2 int1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file, partial := CAFile(tt.bundle, tt.chain)
			if got := names(t, file); got != tt.caFile || partial != tt.partial {
				t.Errorf("ca.crt %q (partial %v), want %q (%v)", got, partial, tt.caFile, tt.partial)
			}
			v := View{LeaderData: map[string]string{KeyCA: tt.bundle, KeyCAChain: tt.chain}, Parsed: NewParsed()}
			if got := names(t, v.caFile()); got != tt.caFile {
				t.Errorf("the unit's ca.crt %q, want %q", got, tt.caFile)
			}
			if tt.chain == "" && v.caFile() != tt.bundle && !tt.partial {
				t.Errorf("with no chain, ca.crt is not the bundle as published")
			}
			if got := names(t, v.unitChain(tt.signed)); got != tt.tlsCrt {
				t.Errorf("tls.crt %q, want %q", got, tt.tlsCrt)
			}
		})
	}

	if got := names(t, chainFor(int2.PEM, root.PEM+int1.PEM+own.PEM)); got != "int1 root" {
		t.Errorf("chain published %q, want the certificates above int2 in order (int1 root)", got)
	}
	if got := chainFor(own.PEM, int1.PEM+root.PEM); got != "" {
		t.Errorf("chain published for a self-signed CA %q, want none", names(t, got))
	}
	trusted := TrustedCAs(root.PEM, int2.PEM, int1.PEM+root.PEM)
	if len(trusted) != 2 || trusted[0] != caseal.Fingerprint(root.Cert.Raw) || trusted[1] != caseal.Fingerprint(int2.Cert.Raw) {
		t.Errorf("a ca.crt of the root trusts %v, want the root and int2", trusted)
	}
}

// The leader publishes, of ca.chain_crl_file, the CRLs a certificate of the chain signed,
// in their order: not the group CA's own, not a stranger's, not what does not parse.
func TestChainCRLsAreThoseOfTheChain(t *testing.T) {
	root := newCA(t, "root")
	int1 := testCA{root.Intermediate(t, "int1")}
	int2 := testCA{int1.Intermediate(t, "int2")}
	stranger := newCA(t, "stranger")
	crl := func(ca testCA) string {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now, NextUpdate: now.Add(day)}, ca.Cert, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	}
	ofRoot, ofInt1 := crl(root), crl(int1)
	file := ofInt1 + crl(int2) + "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n" + crl(stranger) + ofRoot
	if got, want := chainCRLs(int1.PEM+root.PEM, file), ofInt1+ofRoot; got != want {
		t.Errorf("published %d bytes, want the CRLs of int1 and the root (%d bytes)", len(got), len(want))
	}
	if got := chainCRLs("", file); got != "" {
		t.Errorf("with no chain, published %q, want nothing", got)
	}
}
