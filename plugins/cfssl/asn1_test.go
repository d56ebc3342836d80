package cfssl

import (
	"crypto/x509/pkix"
	"encoding/asn1"
)

// asn1BasicConstraintsCA is the extension by which a CSR asks to be a CA.
func asn1BasicConstraintsCA() (pkix.Extension, error) {
	val, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: val}, err
}
