package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The formats a unit asks for are written beside tls.crt: bundle.pem (certificate and
// key, 0600), keystore.p12 (key and chain, 0600) and truststore.p12 (the CA bundle),
// which OpenSSL 3 (the real command) and go-pkcs12 read with the password, modern and
// legacy alike; they follow every renewal and CA change.
func TestOutputFormats(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "modern", true: "legacy"}[legacy], func(t *testing.T) {
			pwFile := filepath.Join(t.TempDir(), "p12.pw")
			os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
			c := newCluster(t)
			c.cert.Output.Formats = []string{config.FormatBundle, config.FormatPKCS12}
			c.cert.Output.PKCS12PasswordFile, c.cert.Output.PKCS12Legacy = pwFile, legacy
			c.start("db/0")
			cert := c.waitCerts("db/0")["db/0"]
			dir := c.dir("db/0")
			awaitFile(t, filepath.Join(dir, TruststoreFile))

			for name, mode := range map[string]os.FileMode{BundleFile: 0o600, KeystoreFile: 0o600, TruststoreFile: 0o644} {
				if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode().Perm() != mode {
					t.Errorf("%s: %v, want mode %04o", name, err, mode)
				}
			}
			crt, _ := os.ReadFile(filepath.Join(dir, CertFile))
			key, _ := os.ReadFile(filepath.Join(dir, KeyFile))
			if bundle, _ := os.ReadFile(filepath.Join(dir, BundleFile)); !bytes.Equal(bundle, append(crt, key...)) {
				t.Errorf("bundle.pem is not tls.crt then tls.key")
			}
			ks, _ := os.ReadFile(filepath.Join(dir, KeystoreFile))
			priv, leaf, _, err := pkcs12.DecodeChain(ks, "s3cret")
			if err != nil || !leaf.Equal(cert) || !certutil.SamePublicKey(leaf.PublicKey, priv.(crypto.Signer).Public()) {
				t.Fatalf("keystore.p12: %v; leaf is tls.crt's: %v", err, leaf != nil && leaf.Equal(cert))
			}
			// The key entry is named after the unit: Java's alias, OpenSSL's friendlyName.
			blocks, err := pkcs12.ToPEM(ks, "s3cret")
			if err != nil {
				t.Fatalf("keystore.p12: %v", err)
			}
			for _, b := range blocks {
				if b.Type == "PRIVATE KEY" && b.Headers["friendlyName"] != "db/0" {
					t.Errorf("keystore.p12's key is named %q, want db/0", b.Headers["friendlyName"])
				}
			}
			if out, err := exec.Command("openssl", "pkcs12", "-in", filepath.Join(dir, KeystoreFile), "-passin", "pass:s3cret", "-nocerts", "-nodes").CombinedOutput(); err != nil || !strings.Contains(string(out), "friendlyName: db/0") {
				t.Errorf("openssl pkcs12 reads keystore.p12's key as: %v\n%s", err, out)
			}
			ts, _ := os.ReadFile(filepath.Join(dir, TruststoreFile))
			cas, err := pkcs12.DecodeTrustStore(ts, "s3cret")
			caPEM, _ := os.ReadFile(filepath.Join(dir, CAFile))
			want, _ := certutil.ParseCertificates(caPEM)
			if err != nil || len(cas) != len(want) || !cas[0].Equal(want[0]) {
				t.Fatalf("truststore.p12: %v, %d CAs; want ca.crt's %d", err, len(cas), len(want))
			}
			for _, file := range []string{KeystoreFile, TruststoreFile} {
				// No -legacy, for the legacy file too: 3DES and SHA-1 are in OpenSSL 3's
				// default provider (RC2, which -legacy is for, is not used).
				args := []string{"pkcs12", "-in", filepath.Join(dir, file), "-passin", "pass:s3cret", "-nokeys"}
				if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil || !strings.Contains(string(out), "BEGIN CERTIFICATE") {
					t.Errorf("openssl pkcs12 cannot read %s: %v\n%s", file, err, out)
				}
			}

			// A renewal rewrites them all.
			before, _ := os.Stat(filepath.Join(dir, KeystoreFile))
			os.Remove(filepath.Join(dir, CertFile)) // the unit asks again, at its next wake-up
			if err := c.members["db/0"].SetUnitData(context.Background(), map[string]string{"poke": "1"}); err != nil {
				t.Fatal(err)
			}
			c.waitCerts("db/0")
			deadline := time.Now().Add(10 * time.Second)
			for {
				after, err := os.Stat(filepath.Join(dir, KeystoreFile))
				b, _ := os.ReadFile(filepath.Join(dir, BundleFile))
				crt, _ := os.ReadFile(filepath.Join(dir, CertFile))
				if err == nil && !after.ModTime().Equal(before.ModTime()) && bytes.HasPrefix(b, crt) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the formats did not follow the new certificate")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// on_change runs once the unit's whole set of files is in place, never before, and
// names what changed; a CRL or CA that arrives alone later runs it again, naming it.
func TestOnChangeWaitsForTheWholeSet(t *testing.T) {
	log := filepath.Join(t.TempDir(), "runs")
	t.Setenv("RUNS", log)
	c := newCluster(t)
	c.cert.Output.Formats = []string{config.FormatBundle}
	c.cert.OnChange = `cd "$TLSRELAY_OUTPUT_DIR" && echo "$TLSRELAY_UNIT changed=[$TLSRELAY_CHANGED] present=[$(ls | grep -v pending | tr '\n' ' ')]" >> "$RUNS"`
	c.cert.OnChangeTimeout = 5 * time.Second
	c.start("db/0")
	c.start("db/1")
	c.waitCerts("db/0", "db/1")
	c.stop("db/1") // revoked at once: db/0 gets a CRL, and runs on_change for it alone
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		runs := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, run := range runs {
			for _, want := range []string{"tls.key", "tls.crt", "ca.crt", "ca.crl", "bundle.pem"} {
				if run != "" && !strings.Contains(run[strings.Index(run, "present="):], want) {
					t.Fatalf("on_change ran before %s was in place: %s", want, run)
				}
			}
		}
		if strings.Contains(string(b), "db/0 changed=[ca.crl]") && strings.Contains(string(b), "db/1 ") {
			first := runs[0]
			for _, want := range []string{"bundle.pem", "ca.crt", "tls.crt", "tls.key"} {
				if !strings.Contains(first[:strings.Index(first, "present=")], want) {
					t.Errorf("the first run does not name %s as changed: %s", want, first)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no on_change run named ca.crl; runs:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func awaitFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
	}
}

// Every format the config accepts has its files and maker in the table, and the table
// holds no other: a format validated but not written would leave a service's file
// missing in silence.
func TestEveryFormatIsInTheTable(t *testing.T) {
	if len(formats) != len(config.Formats) {
		t.Fatalf("the table holds %d formats, the config %d (%v)", len(formats), len(config.Formats), config.Formats)
	}
	for _, name := range config.Formats {
		f, ok := formats[name]
		if !ok || len(f.files) == 0 || f.make == nil {
			t.Errorf("format %q: in the table %t, files %v", name, ok, f.files)
		}
	}
}

// Every on_change run, in every unit of a group whose units start, stop and start
// again, sees the whole set of files, and they agree: tls.key is tls.crt's key,
// tls.crt chains to ca.crt, ca.crl is signed by a CA in ca.crt, bundle.pem is tls.crt
// and tls.key. The hook copies what it sees; the test reads the copies.
func TestOnChangeSeesEveryFileInAgreement(t *testing.T) {
	snaps := t.TempDir()
	t.Setenv("SNAPS", snaps)
	c := newCluster(t)
	c.cert.Output.Formats = []string{config.FormatBundle}
	c.cert.OnChange = `d=$(mktemp -d "$SNAPS/run.XXXXXX") && cp "$TLSRELAY_OUTPUT_DIR"/tls.key "$TLSRELAY_OUTPUT_DIR"/tls.crt "$TLSRELAY_OUTPUT_DIR"/ca.crt "$TLSRELAY_OUTPUT_DIR"/ca.crl "$TLSRELAY_OUTPUT_DIR"/bundle.pem "$d"/ 2>"$d/missing"`
	c.cert.OnChangeTimeout = 5 * time.Second
	units := []string{"db/0", "db/1", "db/2", "db/3", "db/4", "db/5", "db/6", "db/7"}
	for round := 0; round < 3; round++ {
		for _, u := range units {
			c.start(u)
		}
		c.waitCerts(units...)
		for _, u := range append(units[round*2:], units[:round*2]...) {
			c.stop(u)
		}
	}
	runs, err := filepath.Glob(filepath.Join(snaps, "run.*"))
	if err != nil || len(runs) < len(units) {
		t.Fatalf("%d on_change runs copied their files (%v); want at least one a unit", len(runs), err)
	}
	for _, run := range runs {
		if missing, _ := os.ReadFile(filepath.Join(run, "missing")); len(missing) > 0 {
			t.Errorf("an on_change run did not find every file: %s", missing)
			continue
		}
		if err := filesAgree(run); err != nil {
			t.Errorf("an on_change run saw files that disagree: %v", err)
		}
	}
}

// filesAgree checks that the files in dir belong together.
func filesAgree(dir string) error {
	read := func(name string) []byte { b, _ := os.ReadFile(filepath.Join(dir, name)); return b }
	certs, err := certutil.ParseCertificates(read(CertFile))
	if err != nil {
		return fmt.Errorf("tls.crt: %w", err)
	}
	pub, err := certutil.PublicKeyOfPrivatePEM(read(KeyFile))
	if err != nil {
		return fmt.Errorf("tls.key: %w", err)
	}
	if !certutil.SamePublicKey(certs[0].PublicKey, pub) {
		return fmt.Errorf("tls.key is not tls.crt's key")
	}
	cas, err := certutil.ParseCertificates(read(CAFile))
	if err != nil {
		return fmt.Errorf("ca.crt: %w", err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("tls.crt does not chain to ca.crt: %w", err)
	}
	block, _ := pem.Decode(read(CRLFile))
	if block == nil {
		return fmt.Errorf("ca.crl is not PEM")
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return fmt.Errorf("ca.crl: %w", err)
	}
	if !slices.ContainsFunc(cas, func(ca *x509.Certificate) bool { return crl.CheckSignatureFrom(ca) == nil }) {
		return fmt.Errorf("ca.crl is signed by no CA in ca.crt")
	}
	if want := append(append([]byte{}, read(CertFile)...), read(KeyFile)...); !bytes.Equal(read("bundle.pem"), want) {
		return fmt.Errorf("bundle.pem is not tls.crt then tls.key")
	}
	return nil
}
