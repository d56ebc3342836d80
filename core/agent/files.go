package agent

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tlsrelay/tlsrelay/core/fault"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"

	"github.com/tlsrelay/tlsrelay/core/durable"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The files in a unit's output directory.
const (
	KeyFile        = "tls.key"     // the private key of tls.crt, mode 0600
	CertFile       = "tls.crt"     // the unit's certificate chain
	CAFile         = "ca.crt"      // the group's CA bundle
	CRLFile        = "ca.crl"      // the group's CRL: certificates of departed units
	PendingKeyFile = "pending.key" // the key of a CSR awaiting its certificate, mode 0600
	PendingCSRFile = "pending.csr"
)

// KeyMode is the mode of every private key file.
const KeyMode = 0o600

// files reads and writes one unit's output directory.
type files struct {
	dir    string
	mode   os.FileMode       // of the certificate and CA files; the key is always KeyMode
	writer atomicfile.Writer // gives every file its owner (certificate.output.owner, .group) and makes it durable
	parsed *parsedFiles      // nil: nothing is kept
}

// parsedFiles is what the unit's key files gave when they were last parsed, by the
// digest of their text (never the key's text itself). A unit reads its files at every
// decision; parsing a key (a scalar multiplication for an EC key) and a CSR cost far
// more than reading them, and the files change once a renewal.
type parsedFiles struct {
	installedDigest, pendingDigest [sha256.Size]byte
	installed                      *installedPair
	pending                        *pendingPair
}

// digestOf hashes two files' texts, the first length-prefixed so they cannot run into
// one another.
func digestOf(a, b []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(a))))
	h.Write(a)
	h.Write(b)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

func (f files) path(name string) string { return filepath.Join(f.dir, name) }

func (f files) read(name string) ([]byte, error) {
	b, err := os.ReadFile(f.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (f files) write(name string, data []byte, mode os.FileMode) error {
	return f.writer.Write(f.path(name), data, mode)
}

// loadLocal reads the unit's key material as the protocol sees it. Files that do not
// belong together (a certificate for another key, a CSR for another key) count as absent,
// so the protocol starts over rather than serving a mismatched pair.
func (f files) loadLocal() (protocol.Local, []string, error) {
	var local protocol.Local
	var notes []string
	if err := safedir.Ensure(f.dir, 0o755); err != nil {
		return local, nil, fault.Permanent(fmt.Errorf("output directory: %w", err))
	}
	inst, note, err := f.loadInstalled()
	if err != nil {
		return local, nil, err
	}
	local.Installed = inst
	if note != "" {
		notes = append(notes, note)
	}
	pending, note, err := f.loadPending()
	if err != nil {
		return local, nil, err
	}
	local.Pending = pending
	if note != "" {
		notes = append(notes, note)
	}
	crl, err := f.read(CRLFile)
	if err != nil {
		return local, nil, err
	}
	local.CRLPEM = string(crl)
	return local, notes, nil
}

func (f files) loadInstalled() (*protocol.Installed, string, error) {
	certPEM, err := f.read(CertFile)
	if err != nil || certPEM == nil {
		return nil, "", err
	}
	keyPEM, err := f.read(KeyFile)
	if err != nil {
		return nil, "", err
	}
	pair := f.installedPair(certPEM, keyPEM)
	if pair.parseErr != nil {
		return nil, fmt.Sprintf("%s does not parse (%v): requesting a new certificate", f.path(CertFile), pair.parseErr), nil
	}
	if !pair.matches {
		return nil, fmt.Sprintf("%s does not match %s: requesting a new certificate", f.path(KeyFile), f.path(CertFile)), nil
	}
	caPEM, err := f.read(CAFile)
	if err != nil {
		return nil, "", err
	}
	return &protocol.Installed{Cert: pair.cert, ChainPEM: string(certPEM), CAPEM: string(caPEM)}, "", nil
}

// installedPair parses tls.crt and tls.key, or returns what they gave last time.
func (f files) installedPair(certPEM, keyPEM []byte) installedPair {
	var digest [sha256.Size]byte
	if f.parsed != nil {
		if digest = digestOf(certPEM, keyPEM); f.parsed.installed != nil && f.parsed.installedDigest == digest {
			return *f.parsed.installed
		}
	}
	var pair installedPair
	if certs, err := certutil.ParseCertificates(certPEM); err != nil {
		pair.parseErr = err
	} else {
		pub, err := certutil.PublicKeyOfPrivatePEM(keyPEM)
		pair = installedPair{cert: certs[0], matches: err == nil && certutil.SamePublicKey(certs[0].PublicKey, pub)}
	}
	if f.parsed != nil {
		f.parsed.installedDigest, f.parsed.installed = digest, &pair
	}
	return pair
}

// pendingPair parses pending.key and pending.csr, or returns what they gave last time.
func (f files) pendingPair(keyPEM, csrPEM []byte) pendingPair {
	var digest [sha256.Size]byte
	if f.parsed != nil {
		if digest = digestOf(keyPEM, csrPEM); f.parsed.pending != nil && f.parsed.pendingDigest == digest {
			return *f.parsed.pending
		}
	}
	pub, kerr := certutil.PublicKeyOfPrivatePEM(keyPEM)
	// The unit made this CSR with this key: whether it is for the key is the question,
	// which the public keys answer; the leader checks its signature.
	csr, cerr := parseOwnCSR(csrPEM)
	pair := pendingPair{pub: pub, matches: kerr == nil && cerr == nil && certutil.SamePublicKey(csr.PublicKey, pub)}
	if f.parsed != nil {
		f.parsed.pendingDigest, f.parsed.pending = digest, &pair
	}
	return pair
}

// installedPair is what tls.crt and tls.key gave: the leaf, and whether the key is its.
type installedPair struct {
	cert     *x509.Certificate
	matches  bool
	parseErr error
}

// pendingPair is what pending.key and pending.csr gave: the key's public half, and
// whether the CSR parses and is for that key.
type pendingPair struct {
	pub     crypto.PublicKey
	matches bool
}

func (f files) loadPending() (*protocol.Pending, string, error) {
	keyPEM, err := f.read(PendingKeyFile)
	if err != nil || keyPEM == nil {
		return nil, "", err
	}
	csrPEM, err := f.read(PendingCSRFile)
	if err != nil {
		return nil, "", err
	}
	pair := f.pendingPair(keyPEM, csrPEM)
	if !pair.matches {
		return nil, fmt.Sprintf("%s and %s do not belong together: making a new CSR", f.path(PendingKeyFile), f.path(PendingCSRFile)), nil
	}
	return &protocol.Pending{CSRPEM: string(csrPEM), PublicKey: pair.pub}, "", nil
}

// savePending stores a new key and CSR. The key is written first and 0600 from creation.
func (f files) savePending(keyPEM, csrPEM []byte) error {
	if err := f.write(PendingKeyFile, keyPEM, KeyMode); err != nil {
		return err
	}
	return f.write(PendingCSRFile, csrPEM, 0o644)
}

// install writes the CA and the certificate and promotes the pending key. The key is
// moved by rename, so it is never copied and keeps its 0600 mode. A crash between the
// steps leaves a key and certificate that do not match, which loadLocal treats as no
// certificate: the unit asks again.
func (f files) install(chainPEM, caPEM []byte) error {
	if err := f.write(CAFile, caPEM, f.mode); err != nil {
		return err
	}
	if err := os.Rename(f.path(PendingKeyFile), f.path(KeyFile)); err != nil {
		return fmt.Errorf("promote %s: %w", f.path(PendingKeyFile), err)
	}
	// The pending CSR is spent once its key is promoted: its inode becomes tls.crt's,
	// which spares creating one (durable.Spare).
	w := f.writer
	w.Temp = durable.Spare(f.path(PendingCSRFile))
	if err := w.Write(f.path(CertFile), chainPEM, f.mode); err != nil {
		return err
	}
	if err := os.Remove(f.path(PendingCSRFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// leaf returns the installed certificate, for status.
func leaf(local protocol.Local) *x509.Certificate {
	if local.Installed == nil {
		return nil
	}
	return local.Installed.Cert
}

// parseOwnCSR reads a CSR the unit made itself, without checking its signature (the
// leader does; three quarters of the parse's cost for a P-256 CSR).
func parseOwnCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("CSR is not PEM")
	}
	return x509.ParseCertificateRequest(block.Bytes)
}
