package plugintest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
)

// CSRRequest is what a CSR asks for, for MakeCSR.
type CSRRequest struct {
	Key     crypto.Signer // nil: a new P-256 key
	Subject pkix.Name
	DNS     []string
	IPs     []net.IP
	URIs    []string
	Emails  []string
	// Extensions are asked for in the CSR's extension request (a signer must not copy
	// them).
	Extensions []pkix.Extension
}

// MakeCSR builds a PEM CSR with Go's crypto, independent of any backend. It panics on
// a request Go cannot encode (a bug in the caller).
func MakeCSR(r CSRRequest) string {
	key := r.Key
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	}
	tmpl := &x509.CertificateRequest{Subject: r.Subject, DNSNames: r.DNS, IPAddresses: r.IPs, EmailAddresses: r.Emails,
		ExtraExtensions: r.Extensions}
	for _, u := range r.URIs {
		parsed, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// Hostile is a CSR every signer must refuse as InvalidArgument on its own, whatever
// the leader's policy let through.
type Hostile struct {
	Name   string
	CSRPEM string
}

var (
	rsa1024Once sync.Once
	rsa1024     *rsa.PrivateKey
)

// HostileCSRs returns CSRs that every backend's SignCSR refuses (certutil.CheckSignRequest
// makes these checks): each was signed by some backend once. The common name is cn.
func HostileCSRs(cn string) []Hostile {
	rsa1024Once.Do(func() {
		var err error
		if rsa1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
	})
	name := pkix.Name{CommonName: cn}
	manySANs := make([]string, 10000)
	for i := range manySANs {
		manySANs[i] = fmt.Sprintf("n%d.example", i)
	}
	twoCNs := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn + "-other"},
	}}
	valid := MakeCSR(CSRRequest{Subject: name})
	return []Hostile{
		{"two common names", MakeCSR(CSRRequest{Subject: twoCNs})},
		{"an email SAN", MakeCSR(CSRRequest{Subject: name, Emails: []string{"root@example.org"}})},
		{"an RSA-1024 key", MakeCSR(CSRRequest{Key: rsa1024, Subject: name})},
		{"a bare wildcard SAN", MakeCSR(CSRRequest{Subject: name, DNS: []string{"*"}})},
		{"a SAN with a comma and an equals sign", MakeCSR(CSRRequest{Subject: name, DNS: []string{"a,b=c"}})},
		{"10,000 SANs", MakeCSR(CSRRequest{Subject: name, DNS: manySANs})},
		{"PEM headers that make openssl ask for a pass phrase", withHeaders(valid)},
		{"two PEM blocks", valid + valid},
		{"a malformed PEM block before a valid one", badEndLine(valid) + valid},
		{"text after the PEM block", valid + "trailing text\n"},
		{"a common name with a newline and an equals sign", MakeCSR(CSRRequest{Subject: pkix.Name{CommonName: cn + "\nb=c/CN=admin"}})},
	}
}

// badEndLine breaks the END line of a PEM block, which openssl refuses ("bad end line")
// and a lenient reader skips on its way to the next block.
func badEndLine(pemText string) string {
	return strings.Replace(pemText, "-----END CERTIFICATE REQUEST-----", "-----END CERTIFICATE REQUEST----", 1)
}

// withHeaders adds the headers of an encrypted PEM to a PEM block.
func withHeaders(pemText string) string {
	block, _ := pem.Decode([]byte(pemText))
	block.Headers = map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}
	return string(pem.EncodeToMemory(block))
}

// CAExtensions are the extensions a CSR asks for to be made a CA: basic constraints
// CA:TRUE, the key usages keyCertSign and cRLSign, and code signing as its extended key
// usage. A signer builds a leaf from the profile and copies none of them.
func CAExtensions() []pkix.Extension {
	mustMarshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			panic(err)
		}
		return b
	}
	basic := struct {
		IsCA bool `asn1:"optional"`
	}{IsCA: true}
	// keyCertSign (bit 5) and cRLSign (bit 6) of the KeyUsage BIT STRING.
	usage := asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}
	return []pkix.Extension{
		{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: mustMarshal(basic)},
		{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: mustMarshal(usage)},
		{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: mustMarshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 3}})},
	}
}
