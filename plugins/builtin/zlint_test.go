package builtin

import (
	"context"
	"sort"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// webPKILints are zlint's lints that do not apply to a group's private CA, each with why
// (docs/SECURITY.md lists them too). Every other lint must pass.
var webPKILints = map[string]string{
	"e_ca_country_name_missing":                               "a group CA's subject is its name alone, not a publicly trusted CA's organisation and country",
	"e_ca_organization_name_missing":                          "as above",
	"e_dnsname_not_valid_tld":                                 "units are named in private namespaces (web-0, *.example.internal)",
	"e_ext_san_contains_reserved_ip":                          "units serve on private addresses (10.0.0.0/8 and the like)",
	"e_missing_crl_distrib_point":                             "the CRL travels with the unit's files (ca.crl), not by URL",
	"e_sub_cert_aia_missing":                                  "peers hold the CA bundle (ca.crt); there is no issuer URL to point at",
	"w_sub_cert_aia_does_not_contain_issuing_ca_url":          "as above",
	"e_sub_cert_cert_policy_empty":                            "certificate policy OIDs are the CA/Browser Forum's, for public certificates",
	"e_sub_cert_certificate_policies_missing":                 "as above",
	"w_ext_subject_key_identifier_not_recommended_subscriber": "RFC 5280 recommends the SKI; only the CA/Browser Forum discourages it",
	"w_subject_common_name_included":                          "consumers read the CN (Java and Kafka principals, haproxy's logs); it is one of the SANs' names",
}

// Certificates from every built-in signer pass zlint but for webPKILints: the CA, and a
// leaf of each profile for an ECDSA and an RSA key, with the default common name (the
// unit's DNS name; "web/0" fails e_dnsname_bad_character_in_label and
// e_subject_common_name_not_exactly_from_san). (They put keyEncipherment on ECDSA
// keys, and easy-rsa's CA and leaves had basicConstraints and keyUsage not critical and
// an issuer name in the authority key identifier.)
func TestCertificatesPassZlint(t *testing.T) {
	for _, name := range []string{"cfssl", "openssl", "easyrsa"} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := Backends[name](nil)
			if err := b.Configure(ctx, sdk.ConfigureRequest{StateDir: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
			ca, err := b.CA(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lintPEM(t, "the CA", ca.BundlePEM)
			for _, spec := range []sdk.KeySpec{{Algorithm: "ecdsa", Size: 256}, {Algorithm: "rsa", Size: 2048}} {
				csr, err := certutil.NewCSR(sdk.CSRRequest{Key: spec, CommonName: "web-0", SANs: []string{"web-0", "10.0.0.1"}})
				if err != nil {
					t.Fatal(err)
				}
				for _, profile := range sdk.Profiles {
					cert, err := b.SignCSR(ctx, sdk.SignRequest{CSRPEM: csr.CSRPEM, Profile: profile, Unit: "web/0"})
					if err != nil {
						t.Fatal(err)
					}
					lintPEM(t, string(profile)+" "+spec.Algorithm+" leaf", cert.ChainPEM)
				}
			}
		})
	}
}

func lintPEM(t *testing.T, what string, pemBytes []byte) {
	t.Helper()
	certs, err := certutil.ParseCertificates(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	zc, err := zx509.ParseCertificate(certs[0].Raw)
	if err != nil {
		t.Fatalf("%s: zcrypto cannot parse it: %v", what, err)
	}
	var failed []string
	for lintName, r := range zlint.LintCertificate(zc).Results {
		if r.Status >= lint.Warn && webPKILints[lintName] == "" {
			failed = append(failed, lintName+" ("+r.Status.String()+")")
		}
	}
	sort.Strings(failed)
	if len(failed) > 0 {
		t.Errorf("%s fails zlint: %v", what, failed)
	}
}
