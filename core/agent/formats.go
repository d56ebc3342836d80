package agent

import (
	"fmt"
	"os"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The files the output formats add (config.Output.Formats).
const (
	BundleFile     = "bundle.pem"     // tls.crt then tls.key, mode 0600
	KeystoreFile   = "keystore.p12"   // tls.key and the chain of tls.crt, mode 0600
	TruststoreFile = "truststore.p12" // the certificates of ca.crt
)

// derived writes the files the unit's formats derive from tls.key, tls.crt and ca.crt,
// from what those hold now; it returns the names written. Each is written whole
// (atomicfile), keys 0600; after a crash between two, the next start writes them all
// again (writeDerived at start).
func (f files) writeDerived(out config.Output) ([]string, error) {
	if len(out.Formats) == 0 {
		return nil, nil
	}
	certPEM, err := f.read(CertFile)
	if err != nil || certPEM == nil {
		return nil, err
	}
	keyPEM, err := f.read(KeyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := f.read(CAFile)
	if err != nil {
		return nil, err
	}
	var written []string
	if out.Wants(config.FormatBundle) {
		bundle := append(append([]byte{}, certPEM...), keyPEM...)
		if err := f.write(BundleFile, bundle, KeyMode); err != nil {
			return written, err
		}
		written = append(written, BundleFile)
	}
	if out.Wants(config.FormatPKCS12) {
		keystore, truststore, err := pkcs12Pair(out, certPEM, keyPEM, caPEM)
		if err != nil {
			return written, err
		}
		if err := f.write(KeystoreFile, keystore, KeyMode); err != nil {
			return written, err
		}
		if err := f.write(TruststoreFile, truststore, f.mode); err != nil {
			return written, err
		}
		written = append(written, KeystoreFile, TruststoreFile)
	}
	return written, nil
}

// pkcs12Pair encodes the keystore (the key, its certificate and the chain after it) and
// the truststore (the CA bundle, marked trusted for Java) with the configured password.
func pkcs12Pair(out config.Output, certPEM, keyPEM, caPEM []byte) (keystore, truststore []byte, err error) {
	password, err := out.PKCS12Password()
	if err != nil {
		return nil, nil, err
	}
	chain, err := certutil.ParseCertificates(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CertFile, err)
	}
	key, err := certutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	cas, err := certutil.ParseCertificates(caPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CAFile, err)
	}
	enc := pkcs12.Modern2023
	if out.PKCS12Legacy {
		enc = pkcs12.LegacyDES
	}
	if keystore, err = enc.Encode(key, chain[0], chain[1:], password); err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", KeystoreFile, err)
	}
	if truststore, err = enc.EncodeTrustStore(cas, password); err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", TruststoreFile, err)
	}
	return keystore, truststore, nil
}

// derivedStale: a file the formats derive is missing, or older than one it derives from
// (a format added to the config, a crash between two writes).
func (f files) derivedStale(out config.Output) bool {
	var names []string
	if out.Wants(config.FormatBundle) {
		names = append(names, BundleFile)
	}
	if out.Wants(config.FormatPKCS12) {
		names = append(names, KeystoreFile, TruststoreFile)
	}
	var newest time.Time
	for _, src := range []string{CertFile, KeyFile, CAFile} {
		st, err := os.Stat(f.path(src))
		if err != nil {
			return false // nothing installed yet: nothing to derive
		}
		if st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	for _, name := range names {
		if st, err := os.Stat(f.path(name)); err != nil || st.ModTime().Before(newest) {
			return true
		}
	}
	return false
}

// complete returns a check that every file a service reads is in place: the key, the
// certificate, the CA bundle and what the formats add. (ca.crl comes when the leader
// has signed one; a service that needs it checks for it.)
func (f files) complete(out config.Output) func() bool {
	names := []string{KeyFile, CertFile, CAFile}
	if out.Wants(config.FormatBundle) {
		names = append(names, BundleFile)
	}
	if out.Wants(config.FormatPKCS12) {
		names = append(names, KeystoreFile, TruststoreFile)
	}
	return func() bool {
		for _, n := range names {
			if _, err := os.Stat(f.path(n)); err != nil {
				return false
			}
		}
		return true
	}
}
