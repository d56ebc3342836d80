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

// format is what one output format adds: the files it writes, each with its mode, made
// from the unit's key, certificate chain and CA bundle. One table, so that writing,
// telling a file stale and telling the set complete all read the same list.
type format struct {
	files []derivedFile
	make  func(out config.Output, certPEM, keyPEM, caPEM []byte) ([][]byte, error) // one per file, in order
}

// derivedFile is a file a format writes; key files are KeyMode, others the output mode.
type derivedFile struct {
	name string
	key  bool
}

// formats are the output formats: config.Formats names each.
var formats = map[string]format{
	config.FormatBundle: {files: []derivedFile{{BundleFile, true}},
		make: func(_ config.Output, certPEM, keyPEM, _ []byte) ([][]byte, error) {
			return [][]byte{append(append([]byte{}, certPEM...), keyPEM...)}, nil
		}},
	config.FormatPKCS12: {files: []derivedFile{{KeystoreFile, true}, {TruststoreFile, false}},
		make: func(out config.Output, certPEM, keyPEM, caPEM []byte) ([][]byte, error) {
			keystore, truststore, err := pkcs12Pair(out, certPEM, keyPEM, caPEM)
			return [][]byte{keystore, truststore}, err
		}},
}

// wanted lists the formats out asks for, in config.Formats' order.
func wanted(out config.Output) []format {
	var list []format
	for _, name := range config.Formats {
		if out.Wants(name) {
			list = append(list, formats[name])
		}
	}
	return list
}

// derivedNames lists the files out's formats write.
func derivedNames(out config.Output) []string {
	var names []string
	for _, f := range wanted(out) {
		for _, d := range f.files {
			names = append(names, d.name)
		}
	}
	return names
}

// writeDerived writes the files the unit's formats derive from tls.key, tls.crt and
// ca.crt, from what those hold now; it returns the names written. Each is written whole
// (atomicfile), keys 0600; after a crash between two, the next start writes them all
// again (derivedStale at start).
func (f files) writeDerived(out config.Output) ([]string, error) {
	list := wanted(out)
	if len(list) == 0 {
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
	for _, format := range list {
		contents, err := format.make(out, certPEM, keyPEM, caPEM)
		if err != nil {
			return written, err
		}
		for i, d := range format.files {
			mode := f.mode
			if d.key {
				mode = KeyMode
			}
			if err := f.write(d.name, contents[i], mode); err != nil {
				return written, err
			}
			written = append(written, d.name)
		}
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
	// The key entry's alias in Java: the unit's name, the certificate's common name.
	if keystore, err = withFriendlyName(keystore, password, chain[0].Subject.CommonName); err != nil {
		return nil, nil, fmt.Errorf("name the key in %s: %w", KeystoreFile, err)
	}
	if truststore, err = enc.EncodeTrustStore(cas, password); err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", TruststoreFile, err)
	}
	return keystore, truststore, nil
}

// derivedStale: a file the formats derive is missing, or older than one it derives from
// (a format added to the config, a crash between two writes).
func (f files) derivedStale(out config.Output) bool {
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
	for _, name := range derivedNames(out) {
		if st, err := os.Stat(f.path(name)); err != nil || st.ModTime().Before(newest) {
			return true
		}
	}
	return false
}

// complete returns a check that every file a service reads is in place: the key, the
// certificate, the CA bundle, what the formats add, and the CRL unless the group's
// leader says its signer signs none (noCRL). A service told of its files can then load
// every one of them: haproxy and nginx refuse to start on a crl-file that is missing.
func (f files) complete(out config.Output, noCRL func() bool) func() bool {
	names := append([]string{KeyFile, CertFile, CAFile}, derivedNames(out)...)
	return func() bool {
		if _, err := os.Stat(f.path(CRLFile)); err != nil && !noCRL() {
			return false
		}
		for _, n := range names {
			if _, err := os.Stat(f.path(n)); err != nil {
				return false
			}
		}
		return true
	}
}
