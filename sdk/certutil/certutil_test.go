package certutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

func TestCheckKeySpec(t *testing.T) {
	for _, tt := range []struct {
		spec sdk.KeySpec
		ok   bool
	}{
		{sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, true},
		{sdk.KeySpec{Algorithm: "ecdsa", Size: 384}, true},
		{sdk.KeySpec{Algorithm: "rsa", Size: 2048}, true},
		{sdk.KeySpec{Algorithm: "rsa", Size: 4096}, true},
		{sdk.KeySpec{Algorithm: "ecdsa", Size: 521}, false},
		{sdk.KeySpec{Algorithm: "rsa", Size: 1024}, false},
		{sdk.KeySpec{Algorithm: "rsa", Size: 16384}, false},
		{sdk.KeySpec{Algorithm: "rsa", Size: 2047}, false},
		{sdk.KeySpec{Algorithm: "rsa", Size: MaxRSABits}, true},
		{sdk.KeySpec{Algorithm: "rsa", Size: MaxRSABits + 1}, false},
		{sdk.KeySpec{Algorithm: "ed25519", Size: 256}, false},
	} {
		err := CheckKeySpec(tt.spec)
		if (err == nil) != tt.ok || (err != nil && !sdk.IsCode(err, sdk.CodeInvalidArgument)) {
			t.Errorf("CheckKeySpec(%+v) = %v, want ok=%v", tt.spec, err, tt.ok)
		}
	}
}

func TestParseCSR(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "db/0"}}, key)
	good := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	tampered := append([]byte{}, der...)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	for _, tt := range []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"valid", good, true},
		{"not PEM", []byte("garbage"), false},
		{"wrong block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), false},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}}), false},
		{"bad signature", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), false},
	} {
		_, err := ParseCSR(tt.pem, "db/0")
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil {
			var e *sdk.Error
			if !sdk.IsCode(err, sdk.CodeInvalidArgument) || !asError(err, &e) || e.Ref != "csr of db/0" {
				t.Errorf("%s: err = %#v, want invalid argument about csr of db/0", tt.name, err)
			}
		}
	}
}

func asError(err error, target **sdk.Error) bool {
	e, ok := err.(*sdk.Error)
	*target = e
	return ok
}

func TestValidity(t *testing.T) {
	if d, err := Validity(0, time.Hour); d != time.Hour || err != nil {
		t.Errorf("zero: %v %v", d, err)
	}
	if d, err := Validity(2*time.Hour, time.Hour); d != 2*time.Hour || err != nil {
		t.Errorf("given: %v %v", d, err)
	}
	if _, err := Validity(-time.Second, time.Hour); !sdk.IsCode(err, sdk.CodeInvalidArgument) {
		t.Errorf("negative: %v", err)
	}
}

func TestCheckSAN(t *testing.T) {
	for _, tt := range []struct {
		san string
		ok  bool
	}{
		{"db-0", true}, {"db-0.example.com", true}, {"*.example.com", true}, {"127.0.0.1", true}, {"::1", true},
		{"", false}, {"a,DNS:evil", false}, {"a\nbasicConstraints=CA:TRUE", false}, {"a b", false},
		{"*.", false}, {"a=b", false}, {"db/0", false},
		// Every character class at its edges, and the length limit.
		{"azAZ09-_.x", true}, {"a`b", false}, {"a{b", false}, {"a@b", false}, {"a[b", false}, {"a:b", false}, {"a/b", false},
		{strings.Repeat("a", 253), true}, {strings.Repeat("a", 254), false}, {"*." + strings.Repeat("a", 251), true},
	} {
		if err := CheckSAN(tt.san, "unit"); (err == nil) != tt.ok {
			t.Errorf("CheckSAN(%q) = %v, want ok=%v", tt.san, err, tt.ok)
		}
	}
}

func TestDays(t *testing.T) {
	for d, want := range map[time.Duration]int{time.Minute: 1, 24 * time.Hour: 1, 25 * time.Hour: 2, 48 * time.Hour: 2, 720 * time.Hour: 30,
		math.MaxInt64: 106752} { // once rounded up past the largest duration, it wrapped to 1 day

		if got := Days(d); got != want {
			t.Errorf("Days(%s) = %d, want %d", d, got, want)
		}
	}
}

func TestParsePrivateKeyPEMFindsTheKeyBlock(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})
	// A bundle with the certificate first: the key is found after it.
	signer, err := ParsePrivateKeyPEM(append(append([]byte{}, certPEM...), keyPEM...))
	if err != nil || !SamePublicKey(signer.Public(), key.Public()) {
		t.Fatalf("key after a certificate: %v", err)
	}
	// No key at all: the error says what the PEM does hold.
	if _, err := ParsePrivateKeyPEM(certPEM); err == nil || err.Error() != "no PRIVATE KEY block in the PEM (it holds CERTIFICATE)" {
		t.Fatalf("a certificate alone: %v", err)
	}
	if _, err := ParsePrivateKeyPEM([]byte("garbage")); err == nil || err.Error() != "private key is not PEM" {
		t.Fatalf("garbage: %v", err)
	}
}

func TestCheckCommonName(t *testing.T) {
	tests := []struct {
		cn   string
		want string // "" accepted
	}{
		{"node/0", ""},
		{"web-1.example.internal", ""},
		{"Octavia controller", ""},
		{"svc_a:8443@zone*", ""},
		{strings.Repeat("a", MaxCommonNameLength), ""},
		{"", "empty"},
		{strings.Repeat("a", MaxCommonNameLength+1), "more than 64"},
		{" lead", "starts or ends with a space"},
		{"a\nb=c/CN=admin", `'\n'`},
		{"a/CN=admin", "'='"},
		{"tool,O=corp", "','"},
		{"a+b", "'+'"},
		{"esc\x1b[31m", `'\x1b'`},
		{"é", "'é'"},
	}
	for _, tt := range tests {
		err := CheckCommonName(tt.cn)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckCommonName(%q) = %v, want %q", tt.cn, err, tt.want)
		}
	}
}

// CheckSubject is the one statement of the subject rule, which CheckCSRContent and
// tlsrelay's policy both apply: exactly one common name, and one CheckCommonName takes.
func TestCheckSubject(t *testing.T) {
	key, _ := NewKey(sdk.KeySpec{Algorithm: "ecdsa", Size: 256})
	csrWith := func(names ...pkix.AttributeTypeAndValue) *x509.CertificateRequest {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{ExtraNames: names}}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := x509.ParseCertificateRequest(der)
		return csr
	}
	cn := func(v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oidCommonName, Value: v}
	}
	for _, tt := range []struct {
		name string
		csr  *x509.CertificateRequest
		want string // "" passes
	}{
		{"one", csrWith(cn("web-0")), ""},
		{"none", csrWith(), "0 common names"},
		{"two (Go keeps the last, OpenSSL the first)", csrWith(cn("web-0"), cn("admin")), "2 common names"},
		{"one that prints as two attributes", csrWith(cn("web-0/CN=admin")), "'='"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSubject(tt.csr)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("CheckSubject = %v, want %q", err, tt.want)
			}
		})
	}
}
