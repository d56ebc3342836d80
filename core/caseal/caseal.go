// Package caseal seals a CA's private key for leader data, so that a new leader on
// another host can sign with the group's CA, while etcd (and every backup of it) holds
// only ciphertext. AES-256-GCM; the associated data binds the sealed key to its relation
// and to its CA certificate's fingerprint, so a sealed key cannot be replayed into another
// relation or passed off as another CA's.
package caseal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// EnvKey is the environment variable that may hold the seal key instead of a file.
const EnvKey = "TLSRELAY_CA_SEAL_KEY"

// KeySize is the seal key's length: AES-256.
const KeySize = 32

// Sealed is the value of the ca_sealed leader-data key.
type Sealed struct {
	Version    int    `json:"version"`
	CASHA256   string `json:"ca_sha256"` // fingerprint of the CA certificate (DER)
	Nonce      string `json:"nonce"`
	Ciphertext string `json:"ciphertext"`
}

// Decode parses a ca_sealed value; ok is false for anything else.
func Decode(s string) (Sealed, bool) {
	var sealed Sealed
	if s == "" || json.Unmarshal([]byte(s), &sealed) != nil || sealed.Version != 1 || sealed.CASHA256 == "" {
		return Sealed{}, false
	}
	return sealed, true
}

// Encode returns the value stored in leader data.
func (s Sealed) Encode() string {
	b, _ := json.Marshal(s) // strings and an int: cannot fail
	return string(b)
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// LoadKey reads the seal key: from file when set, else from EnvKey; nil when neither is
// configured. The key is 32 bytes, base64 (standard or URL alphabet).
func LoadKey(file string) ([]byte, error) {
	var text, from string
	switch {
	case file != "":
		b, err := safedir.ReadSecret(file)
		if err != nil {
			return nil, fmt.Errorf("ca_seal.key_file: %w", err)
		}
		text, from = string(b), "ca_seal.key_file "+file
	case os.Getenv(EnvKey) != "":
		text, from = os.Getenv(EnvKey), EnvKey
	default:
		return nil, nil
	}
	text = strings.TrimSpace(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(text); err == nil && len(key) == KeySize {
			return key, nil
		}
	}
	// Never echo the text: it is the key, or close to it.
	return nil, fmt.Errorf("%s: not %d bytes in base64 (make one with: head -c32 /dev/urandom | base64)", from, KeySize)
}

func aad(relation, fingerprint string) []byte {
	return []byte("tlsrelay ca_sealed v1\x00" + relation + "\x00" + fingerprint)
}

// Seal encrypts the CA key of the CA whose certificate DER is caDER.
func Seal(key []byte, relation string, caDER, caKeyPEM []byte) (Sealed, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return Sealed{}, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("seal CA key: %w", err)
	}
	fp := Fingerprint(caDER)
	ct := gcm.Seal(nil, nonce, caKeyPEM, aad(relation, fp))
	return Sealed{Version: 1, CASHA256: fp, Nonce: base64.StdEncoding.EncodeToString(nonce),
		Ciphertext: base64.StdEncoding.EncodeToString(ct)}, nil
}

// ErrWrongKey says the sealed CA key does not open with this key (or was tampered with,
// or belongs to another relation or CA).
var ErrWrongKey = errors.New("the sealed CA key does not open with this seal key (a different ca_seal key, another relation, or tampered data)")

// Open decrypts the CA key sealed for the CA whose certificate DER is caDER.
func Open(key []byte, relation string, caDER []byte, s Sealed) ([]byte, error) {
	fp := Fingerprint(caDER)
	if s.CASHA256 != fp {
		return nil, fmt.Errorf("the sealed CA key is for CA %s, not the group's CA %s", short(s.CASHA256), short(fp))
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce, err1 := base64.StdEncoding.DecodeString(s.Nonce)
	ct, err2 := base64.StdEncoding.DecodeString(s.Ciphertext)
	if err1 != nil || err2 != nil || len(nonce) != gcm.NonceSize() {
		return nil, fmt.Errorf("the sealed CA key is malformed")
	}
	pt, err := gcm.Open(nil, nonce, ct, aad(relation, fp))
	if err != nil {
		return nil, ErrWrongKey
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}
