// Package secretparse reads certificate material as secrets backends hold it: a
// certificate, its key (maybe encrypted, with a passphrase) and intermediates (PEM, PKCS#7
// or DER), a PEM bundle of them all, or a PKCS#12 file. Barbican's containers and the
// file backend's files are read alike. A key that does not match its certificate is
// refused; every error names the reference.
package secretparse

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"

	"github.com/smallstep/pkcs7"
	"github.com/youmark/pkcs8"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Assemble checks fetched parts and returns them as a secret: the certificate as
// stored, the key decrypted with the passphrase when it is encrypted, the intermediates.
// A key that does not match the certificate is refused.
func Assemble(ref string, certPEM, keyPEM, interPEM, passphrase []byte) (sdk.Secret, error) {
	certs, err := certutil.ParseCertificates(certPEM)
	if err != nil {
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "certificate secret is unreadable: %v", err)
	}
	key, keyOut, err := privateKey(ref, keyPEM, passphrase)
	if err != nil {
		return sdk.Secret{}, err
	}
	if !certutil.SamePublicKey(certs[0].PublicKey, key.Public()) {
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref,
			"private_key secret does not match the certificate (subject %q)", certs[0].Subject.String())
	}
	if len(bytes.TrimSpace(interPEM)) > 0 {
		if interPEM, err = Intermediates(interPEM); err != nil {
			return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "intermediates secret is unreadable: %v", err)
		}
	}
	return sdk.Secret{
		CertificatePEM:   WithNewline(certPEM),
		Key:              keyOut,
		IntermediatesPEM: WithNewline(interPEM),
		Passphrase:       passphrase,
	}, nil
}

// privateKey parses a PEM key, decrypting it when it is encrypted. It returns the key
// and the PEM to hand on: as stored when it was in the clear, else the decrypted key as
// PKCS#8.
func privateKey(ref string, keyPEM, passphrase []byte) (crypto.Signer, sdk.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, sdk.Errorf(sdk.CodeInvalidArgument, ref, "private_key secret is not PEM")
	}
	encrypted := block.Type == "ENCRYPTED PRIVATE KEY" || x509.IsEncryptedPEMBlock(block) //nolint:staticcheck // legacy PEM encryption is still in the wild
	if encrypted && len(passphrase) == 0 {
		return nil, nil, sdk.Errorf(sdk.CodeInvalidArgument, ref, "private_key secret is encrypted and the container has no private_key_passphrase")
	}
	if !encrypted {
		signer, err := certutil.ParsePrivateKeyPEM(keyPEM)
		if err != nil {
			return nil, nil, sdk.Errorf(sdk.CodeInvalidArgument, ref, "private_key secret is unreadable: %v", err)
		}
		return signer, WithNewline(keyPEM), nil
	}
	key, err := decrypt(block, passphrase)
	if err != nil {
		return nil, nil, sdk.Errorf(sdk.CodeInvalidArgument, ref, "private_key_passphrase does not decrypt the private_key secret: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, sdk.Errorf(sdk.CodeInvalidArgument, ref, "private_key secret: %v", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decrypt(block *pem.Block, passphrase []byte) (crypto.Signer, error) {
	if block.Type == "ENCRYPTED PRIVATE KEY" {
		key, err := pkcs8.ParsePKCS8PrivateKey(block.Bytes, passphrase)
		if err != nil {
			return nil, err
		}
		return asSigner(key)
	}
	der, err := x509.DecryptPEMBlock(block, passphrase) //nolint:staticcheck // see privateKey
	if err != nil {
		return nil, err
	}
	return certutil.ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der}))
}

func asSigner(key any) (crypto.Signer, error) {
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the key cannot sign")
	}
	return s, nil
}

// FromPEMBundle splits one PEM secret into certificate (the one the key is for, the
// first when none is), intermediates (the other certificates, in their order) and key.
func FromPEMBundle(ref string, bundle []byte) (sdk.Secret, error) {
	var certs, keys [][]byte
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		encoded := pem.EncodeToMemory(block)
		switch {
		case block.Type == "CERTIFICATE":
			certs = append(certs, encoded)
		case block.Type == "PKCS7": // intermediates as `openssl crl2pkcs7` bundles them
			inter, err := Intermediates(encoded)
			if err != nil {
				return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "PKCS#7 block: %v", err)
			}
			parsed, _ := certutil.ParseCertificates(inter)
			for _, c := range parsed {
				certs = append(certs, certutil.CertPEM(c.Raw))
			}
		case bytes.HasSuffix([]byte(block.Type), []byte("PRIVATE KEY")):
			keys = append(keys, encoded)
		}
	}
	switch {
	case len(certs) == 0:
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "secret holds no PEM certificate (want a PEM bundle or PKCS#12)")
	case len(keys) != 1:
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "secret holds %d private keys, want 1", len(keys))
	}
	if pub, err := certutil.PublicKeyOfPrivatePEM(keys[0]); err == nil {
		for i, c := range certs {
			if parsed, err := certutil.ParseCertificates(c); err == nil && certutil.SamePublicKey(parsed[0].PublicKey, pub) {
				// The key's certificate first, the others after it in their order.
				certs = append([][]byte{certs[i]}, append(certs[:i:i], certs[i+1:]...)...)
				break
			}
		}
	}
	return Assemble(ref, certs[0], keys[0], bytes.Join(certs[1:], nil), nil)
}

// FromPKCS12 decodes a PKCS#12 secret without a password (the form Octavia documents).
func FromPKCS12(ref string, der []byte) (sdk.Secret, error) {
	return FromPKCS12WithPassword(ref, der, "")
}

// FromPKCS12WithPassword decodes a PKCS#12 secret with its password.
func FromPKCS12WithPassword(ref string, der []byte, password string) (sdk.Secret, error) {
	key, cert, chain, err := pkcs12.DecodeChain(der, password)
	if err != nil {
		if password == "" {
			return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "PKCS#12 secret does not decode without a password: %v", err)
		}
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "PKCS#12 secret does not decode with its password: %v", err)
	}
	signer, err := asSigner(key)
	if err != nil {
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "PKCS#12 key: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, ref, "PKCS#12 key: %v", err)
	}
	var inter []byte
	for _, c := range chain {
		inter = append(inter, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return Assemble(ref, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), inter, nil)
}

// WithNewline restores the trailing newline Barbican strips from text payloads.
func WithNewline(b []byte) []byte {
	b = bytes.TrimRight(b, "\r\n\t ")
	if len(b) == 0 {
		return nil
	}
	return append(b, '\n')
}

// Intermediates reads an intermediates secret in each form Octavia's cert parser takes
// (PEM certificates, a PKCS#7 bundle as PEM or DER, as `openssl crl2pkcs7` makes, or DER
// certificates) and returns the certificates as PEM.
func Intermediates(raw []byte) ([]byte, error) {
	der := raw
	if block, _ := pem.Decode(raw); block != nil {
		if block.Type != "PKCS7" {
			if _, err := certutil.ParseCertificates(raw); err != nil {
				return nil, err
			}
			return raw, nil
		}
		der = block.Bytes
	}
	var certs []*x509.Certificate
	if p7, err := pkcs7.Parse(der); err == nil {
		certs = p7.Certificates
	} else if certs, err = x509.ParseCertificates(der); err != nil {
		return nil, errors.New("neither PEM certificates, nor PKCS#7, nor DER certificates")
	}
	if len(certs) == 0 {
		return nil, errors.New("a PKCS#7 bundle with no certificate")
	}
	var out []byte
	for _, c := range certs {
		out = append(out, certutil.CertPEM(c.Raw)...)
	}
	return out, nil
}
