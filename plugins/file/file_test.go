package file

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A CA under an enterprise root, kept in a file in each form an operator has it: the
// certificate the key is for comes out as the certificate, whatever its place, the others
// as intermediates; PKCS#7 intermediates and PKCS#12 (with and without a password) read
// alike; a file others may read, a missing one, a relative path and a key for no
// certificate in the file are refused, naming the file.
func TestFetchSecretFromFiles(t *testing.T) {
	root := pkitest.NewCA(t, "root", time.Now())
	int1 := root.Intermediate(t, "int1")
	int2 := int1.Intermediate(t, "int2")
	keyPEM := string(pkitest.KeyPEM(t, int2.Key))
	p7, err := pkcs7.DegenerateCertificate(append(append([]byte{}, int1.Cert.Raw...), root.Cert.Raw...))
	if err != nil {
		t.Fatal(err)
	}
	p12, err := pkcs12.Modern.Encode(int2.Key, int2.Cert, []*x509.Certificate{int1.Cert, root.Cert}, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	p12bare, err := pkcs12.Passwordless.Encode(int2.Key, int2.Cert, []*x509.Certificate{int1.Cert}, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
		return path
	}
	password := write("p12.pw", []byte("s3cret\n"), 0o600)
	for _, tt := range []struct {
		name, ref, config string
		wantInter         string // the intermediates' common names
		wantErr           string
		code              sdk.Code
	}{
		{"PEM, root first", write("a.pem", []byte(root.PEM+keyPEM+int1.PEM+int2.PEM), 0o600), "", "root int1", "", 0},
		{"PEM, the CA first", write("b.pem", []byte(int2.PEM+int1.PEM+root.PEM+keyPEM), 0o600), "", "int1 root", "", 0},
		{"PEM with PKCS#7 intermediates", write("c.pem", []byte(int2.PEM+keyPEM+pkitest.PEM("PKCS7", p7)), 0o600), "", "int1 root", "", 0},
		{"PKCS#12 with a password", write("d.p12", p12, 0o600), `{"pkcs12_password_file": "` + password + `"}`, "int1 root", "", 0},
		{"PKCS#12 without", write("e.p12", p12bare, 0o600), "", "int1", "", 0},
		{"PKCS#12 whose password is not given", write("f.p12", p12, 0o600), "", "", "does not decode without a password", sdk.CodeInvalidArgument},
		{"readable by others", write("g.pem", []byte(int2.PEM+keyPEM), 0o644), "", "", "has mode 0644", sdk.CodeInvalidArgument},
		{"missing", filepath.Join(dir, "nothing.pem"), "", "", "no such file", sdk.CodeNotFound},
		{"a relative path", "group-ca.pem", "", "", "absolute path", sdk.CodeInvalidArgument},
		{"a key for no certificate", write("h.pem", []byte(int1.PEM+root.PEM+keyPEM), 0o600), "", "", "does not match the certificate", sdk.CodeInvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			if err := b.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: []byte(tt.config)}); err != nil {
				t.Fatal(err)
			}
			s, err := b.FetchSecret(context.Background(), tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.ref) || sdk.CodeOf(err) != tt.code {
					t.Fatalf("FetchSecret(%s): %v; want %s naming the file: %q", tt.ref, err, tt.code, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			certs, err := certutil.ParseCertificates(s.CertificatePEM)
			if err != nil || len(certs) != 1 || certs[0].Subject.CommonName != "int2" {
				t.Fatalf("certificate %v (%v), want int2 alone", certs, err)
			}
			inter, _ := certutil.ParseCertificates(s.IntermediatesPEM)
			var names []string
			for _, c := range inter {
				names = append(names, c.Subject.CommonName)
			}
			if got := strings.Join(names, " "); got != tt.wantInter {
				t.Errorf("intermediates %q, want %q", got, tt.wantInter)
			}
			pub, err := certutil.PublicKeyOfPrivatePEM([]byte(s.Key))
			if err != nil || !certutil.SamePublicKey(pub, certs[0].PublicKey) {
				t.Errorf("the key is not int2's: %v", err)
			}
		})
	}
}
