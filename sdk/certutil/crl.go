package certutil

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// NewCRL signs req as a version 2 CRL (with its number and the CA's key identifier)
// with the CA's key, PEM ("X509 CRL"). A signer backend's SignCRL is this, with its CA.
func NewCRL(ca *x509.Certificate, key crypto.Signer, req sdk.CRLRequest) ([]byte, error) {
	if err := CheckCRLRequest(req); err != nil {
		return nil, err
	}
	entries := make([]x509.RevocationListEntry, 0, len(req.Revoked))
	for _, r := range req.Revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: new(big.Int).Set(r.Serial), RevocationTime: r.RevokedAt.UTC()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    req.Number,
		ThisUpdate:                req.ThisUpdate.UTC(),
		NextUpdate:                req.NextUpdate.UTC(),
	}, ca, key)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInternal, "crl", "sign the CRL: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// CheckCRLRequest is what every signer's SignCRL refuses as InvalidArgument: update
// times out of order, a CRL number or a revoked serial that is not positive.
func CheckCRLRequest(req sdk.CRLRequest) error {
	if !req.NextUpdate.After(req.ThisUpdate) {
		return sdk.Errorf(sdk.CodeInvalidArgument, "crl", "next update %s is not after this update %s", req.NextUpdate, req.ThisUpdate)
	}
	if req.Number == nil || req.Number.Sign() <= 0 {
		return sdk.Errorf(sdk.CodeInvalidArgument, "crl", "the CRL number must be positive")
	}
	for _, r := range req.Revoked {
		if r.Serial == nil || r.Serial.Sign() <= 0 {
			return sdk.Errorf(sdk.CodeInvalidArgument, "crl", "a revoked serial must be positive")
		}
	}
	return nil
}

// ParseCRL reads a PEM CRL.
func ParseCRL(pemBytes []byte) (*x509.RevocationList, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "X509 CRL" {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "crl", "not a PEM X509 CRL")
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "crl", "%v", err)
	}
	return crl, nil
}

// Revoked lists a CRL's serials, for tests and status.
func Revoked(crl *x509.RevocationList) []*big.Int {
	out := make([]*big.Int, len(crl.RevokedCertificateEntries))
	for i, e := range crl.RevokedCertificateEntries {
		out[i] = e.SerialNumber
	}
	return out
}
