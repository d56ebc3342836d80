package certutil_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// A CSR that asks to be a CA (CA:TRUE, keyCertSign and cRLSign, code signing) passes
// the checks, since what it asks for is not what it gets: SignPlan.Sign builds a plain
// leaf of the profile and copies none of the CSR's extensions.
func TestSignPlanCopiesNoExtensionOfTheCSR(t *testing.T) {
	caPEM, caKeyPEM, err := certutil.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caCerts, _ := certutil.ParseCertificates(caPEM)
	caKey, _ := certutil.ParsePrivateKeyPEM(caKeyPEM)
	csrPEM := plugintest.MakeCSR(plugintest.CSRRequest{Subject: pkix.Name{CommonName: "db/0"}, DNS: []string{"db-0"},
		Extensions: plugintest.CAExtensions()})
	plan, err := certutil.CheckSignRequest(sdk.SignRequest{CSRPEM: []byte(csrPEM), Profile: sdk.ProfileServer, Unit: "db/0"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.CSR.Extensions) < 3 {
		t.Fatalf("the CSR carries %d extensions: the test asks for nothing", len(plan.CSR.Extensions))
	}
	der, err := plan.Sign(caCerts[0], caKey)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertificates(der)
	if err != nil {
		t.Fatal(err)
	}
	leaf := certs[0]
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Errorf("leaf IsCA=%v key usage %b: it can sign", leaf.IsCA, leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("leaf extended key usages %v, want the server profile's alone", leaf.ExtKeyUsage)
	}
}

// The checks every signer relies on: a CSR with two common names, or a signature that
// does not verify, is InvalidArgument (not only the conformance kit catches these).
func TestCheckSignRequestRefuses(t *testing.T) {
	twoCNs := plugintest.MakeCSR(plugintest.CSRRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "db/0"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "db/1"},
	}}})
	good := plugintest.MakeCSR(plugintest.CSRRequest{Subject: pkix.Name{CommonName: "db/0"}})
	block, _ := pem.Decode([]byte(good))
	block.Bytes[len(block.Bytes)-1] ^= 0xff // the last byte of the signature
	badSignature := string(pem.EncodeToMemory(block))
	for _, tt := range []struct{ name, csr, want string }{
		{"two common names", twoCNs, "common name"},
		{"a signature that does not verify", badSignature, "signature"},
	} {
		_, err := certutil.CheckSignRequest(sdk.SignRequest{CSRPEM: []byte(tt.csr), Profile: sdk.ProfilePeer, Unit: "db/0"}, time.Hour)
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want InvalidArgument about the %s", tt.name, err, tt.want)
		}
	}
}

// A signer copies at most MaxSANs SANs, DNS names, IPs and URIs counted together.
func TestCheckCSRContentSANLimit(t *testing.T) {
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("n%d.example", i)
		}
		return out
	}
	for _, tt := range []struct {
		dns  int
		ips  []net.IP
		uris []string
		ok   bool
	}{
		{certutil.MaxSANs, nil, nil, true},
		{certutil.MaxSANs + 1, nil, nil, false},
		{certutil.MaxSANs - 1, []net.IP{net.ParseIP("10.0.0.1")}, []string{"spiffe://x/y"}, false},
		{certutil.MaxSANs - 2, []net.IP{net.ParseIP("10.0.0.1")}, []string{"spiffe://x/y"}, true},
	} {
		csrPEM := plugintest.MakeCSR(plugintest.CSRRequest{Subject: pkix.Name{CommonName: "db/0"}, DNS: names(tt.dns), IPs: tt.ips, URIs: tt.uris})
		_, err := certutil.CheckSignRequest(sdk.SignRequest{CSRPEM: []byte(csrPEM), Profile: sdk.ProfilePeer, Unit: "db/0"}, time.Hour)
		if (err == nil) != tt.ok {
			t.Errorf("%d DNS names, %d IPs, %d URIs: %v, want ok=%v", tt.dns, len(tt.ips), len(tt.uris), err, tt.ok)
		}
	}
}

// CreateCSR's checks refuse a bad key spec, a missing common name and a bad SAN, each
// as InvalidArgument naming what is wrong.
func TestCheckCSRRequest(t *testing.T) {
	good := sdk.CSRRequest{Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: "db/0", SANs: []string{"db-0", "10.0.0.1"}}
	if err := certutil.CheckCSRRequest(good); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	for _, tt := range []struct {
		name string
		edit func(*sdk.CSRRequest)
		want string
	}{
		{"a bad key spec", func(r *sdk.CSRRequest) { r.Key.Size = 255 }, "key.size"},
		{"no common name", func(r *sdk.CSRRequest) { r.CommonName = "" }, "common name"},
		{"a bad SAN", func(r *sdk.CSRRequest) { r.SANs = append(r.SANs, "a,b") }, `"a,b"`},
	} {
		req := good
		req.SANs = append([]string(nil), good.SANs...)
		tt.edit(&req)
		err := certutil.CheckCSRRequest(req)
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want InvalidArgument about %s", tt.name, err, tt.want)
		}
	}
}
