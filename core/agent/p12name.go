package agent

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the legacy PKCS#12 MAC is SHA-1, as JVMs before 8u301 need
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"unicode/utf16"
)

// The PKCS#12 encoder names no key entry, and Java then calls the keystore's one key
// "1": a Tomcat or Spring key-alias setting had to guess it. withFriendlyName gives the
// key bag a friendlyName attribute (what `openssl pkcs12 -export -name` sets), which
// Java takes as the entry's alias, and computes the file's MAC again over the change.

var (
	oidData           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidKeyBag         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidFriendlyName   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidSHA1           = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	errUnsupportedPFX = errors.New("not a PKCS#12 file as this encoder writes them")
)

// maxMACIterations bounds the work remac will do for a file's iteration count.
const maxMACIterations = 10_000_000

type pfxPDU struct {
	Version  int
	AuthSafe pfxContentInfo
	MacData  pfxMacData `asn1:"optional"`
}

type pfxContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type pfxMacData struct {
	Mac struct {
		Algorithm pkix.AlgorithmIdentifier
		Digest    []byte
	}
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type pfxSafeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue     `asn1:"tag:0,explicit"`
	Attributes []pfxBagAttribute `asn1:"set,optional"`
}

type pfxBagAttribute struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

// withFriendlyName returns pfx with name as the friendlyName of its key bag, MAC'd with
// password again.
func withFriendlyName(pfx []byte, password, name string) ([]byte, error) {
	var p pfxPDU
	if rest, err := asn1.Unmarshal(pfx, &p); err != nil || len(rest) > 0 || !p.AuthSafe.ContentType.Equal(oidData) {
		return nil, errUnsupportedPFX
	}
	var authSafe []byte
	if _, err := asn1.Unmarshal(p.AuthSafe.Content.Bytes, &authSafe); err != nil {
		return nil, errUnsupportedPFX
	}
	var contents []pfxContentInfo
	if _, err := asn1.Unmarshal(authSafe, &contents); err != nil {
		return nil, errUnsupportedPFX
	}
	named := false
	for i, ci := range contents {
		if !ci.ContentType.Equal(oidData) { // encrypted: the certificates, left as they are
			continue
		}
		var raw []byte
		if _, err := asn1.Unmarshal(ci.Content.Bytes, &raw); err != nil {
			return nil, errUnsupportedPFX
		}
		var bags []pfxSafeBag
		if _, err := asn1.Unmarshal(raw, &bags); err != nil {
			return nil, errUnsupportedPFX
		}
		for j, bag := range bags {
			if bag.ID.Equal(oidKeyBag) || bag.ID.Equal(oidShroudedKeyBag) {
				attr, err := friendlyName(name)
				if err != nil {
					return nil, err
				}
				bags[j].Attributes = append(bag.Attributes, attr)
				named = true
			}
		}
		if raw, err := asn1.Marshal(bags); err != nil {
			return nil, err
		} else if contents[i].Content.Bytes, err = asn1.Marshal(raw); err != nil {
			return nil, err
		}
		contents[i].Content.FullBytes = nil
	}
	if !named {
		return nil, fmt.Errorf("%w: no unencrypted key bag", errUnsupportedPFX)
	}
	authSafe, err := asn1.Marshal(contents)
	if err != nil {
		return nil, err
	}
	if p.AuthSafe.Content.Bytes, err = asn1.Marshal(authSafe); err != nil {
		return nil, err
	}
	p.AuthSafe.Content.FullBytes = nil
	if err := remac(&p.MacData, authSafe, password); err != nil {
		return nil, err
	}
	return asn1.Marshal(p)
}

// friendlyName is the attribute: a SET holding the name as a BMPString.
func friendlyName(name string) (pfxBagAttribute, error) {
	bmp, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: utf16BE(name)})
	if err != nil {
		return pfxBagAttribute{}, err
	}
	return pfxBagAttribute{ID: oidFriendlyName, Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: bmp}}, nil
}

// remac computes the MAC of RFC 7292 (HMAC with a key from its appendix B KDF) over
// authSafe, with the algorithm, salt and iterations the file already names.
func remac(m *pfxMacData, authSafe []byte, password string) error {
	var newHash func() hash.Hash
	switch alg := m.Mac.Algorithm.Algorithm; {
	case alg.Equal(oidSHA256):
		newHash = sha256.New
	case alg.Equal(oidSHA1):
		newHash = sha1.New
	default:
		return fmt.Errorf("%w: MAC algorithm %v", errUnsupportedPFX, alg)
	}
	if m.Iterations < 1 || m.Iterations > maxMACIterations {
		return fmt.Errorf("%w: %d MAC iterations", errUnsupportedPFX, m.Iterations)
	}
	key := pkcs12KDF(newHash, m.MacSalt, bmpZeroTerminated(password), m.Iterations, newHash().Size())
	mac := hmac.New(newHash, key)
	mac.Write(authSafe)
	m.Mac.Digest = mac.Sum(nil)
	return nil
}

// utf16BE is s as a BMPString's bytes: UTF-16, big-endian.
func utf16BE(s string) []byte {
	var out []byte
	for _, r := range utf16.Encode([]rune(s)) {
		out = append(out, byte(r>>8), byte(r))
	}
	return out
}

// bmpZeroTerminated is a PKCS#12 password as its KDF takes it (RFC 7292 B.1).
func bmpZeroTerminated(s string) []byte { return append(utf16BE(s), 0, 0) }

// pkcs12KDF is RFC 7292 appendix B.2 with ID 3 (an integrity key), for hashes whose
// block is 64 bytes (SHA-1, SHA-256).
func pkcs12KDF(newHash func() hash.Hash, salt, password []byte, iterations, size int) []byte {
	const v = 64
	d := make([]byte, v)
	for i := range d {
		d[i] = 3
	}
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	in := append(fill(salt), fill(password)...)
	var key []byte
	for len(key) < size {
		h := newHash()
		h.Write(d)
		h.Write(in)
		a := h.Sum(nil)
		for range iterations - 1 {
			h.Reset()
			h.Write(a)
			a = h.Sum(nil)
		}
		key = append(key, a...)
		if len(key) >= size {
			break
		}
		// I_j = (I_j + B + 1) mod 2^(8v), B being A repeated to v bytes.
		b := make([]byte, v)
		for i := range b {
			b[i] = a[i%len(a)]
		}
		for j := 0; j < len(in); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				sum := int(in[j+k]) + int(b[k]) + carry
				in[j+k], carry = byte(sum), sum>>8
			}
		}
	}
	return key[:size]
}
