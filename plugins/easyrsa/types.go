package easyrsa

import (
	"crypto"
	"crypto/rsa"
	"os"
	"path/filepath"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
)

// x509Types are the extensions easy-rsa gives each certificate type, written into the
// PKI's own x509-types directory (which easy-rsa prefers to its shipped one). easy-rsa's
// shipped types leave basicConstraints and the CA's keyUsage not critical (RFC 5280 says
// they must be), put an issuer name and serial in the authority key identifier, and give
// an EC key keyEncipherment, which it cannot do (RFC 5480); zlint flags all four. The
// "-rsa" types add keyEncipherment for RSA keys.
var x509Types = func() map[string]string {
	leaf := func(eku, ku string) string {
		return "basicConstraints = critical,CA:FALSE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n" +
			"extendedKeyUsage = " + eku + "\nkeyUsage = critical," + ku + "\n"
	}
	types := map[string]string{
		"COMMON": "",
		"ca":     "basicConstraints = critical,CA:TRUE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\nkeyUsage = critical,cRLSign,keyCertSign\n",
	}
	for name, eku := range map[string]string{"server": "serverAuth", "client": "clientAuth", "serverClient": "serverAuth,clientAuth"} {
		types[name] = leaf(eku, "digitalSignature")
		types[name+"-rsa"] = leaf(eku, "digitalSignature,keyEncipherment")
	}
	types["client-rsa"] = types["client"] // a client only signs
	return types
}()

// writeTypes puts x509Types in the PKI. Called under withPKI, after init-pki.
func writeTypes(pki string) error {
	dir := filepath.Join(pki, "x509-types")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sdk.Errorf(sdk.CodeFailedPrecondition, dir, "%v", err)
	}
	for name, body := range x509Types {
		if current, err := os.ReadFile(filepath.Join(dir, name)); err == nil && string(current) == body {
			continue
		}
		if err := atomicfile.Write(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return sdk.Errorf(sdk.CodeFailedPrecondition, dir, "%v", err)
		}
	}
	return nil
}

// certType is easy-rsa's type for a profile and a certificate's key.
func certType(p sdk.Profile, pub crypto.PublicKey) string {
	t := certTypes[p]
	if _, isRSA := pub.(*rsa.PublicKey); isRSA {
		t += "-rsa"
	}
	return t
}
