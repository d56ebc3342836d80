package caseal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func key(t *testing.T) []byte {
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

func TestSealOpens(t *testing.T) {
	k, ca, secret := key(t), []byte("ca-der"), []byte("-----BEGIN PRIVATE KEY-----\nxyz\n")
	s, err := Seal(k, "db-peers", ca, secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.Encode(), "xyz") {
		t.Fatal("the sealed value contains the key in clear")
	}
	decoded, ok := Decode(s.Encode())
	if !ok {
		t.Fatal("Decode refused Encode's output")
	}
	got, err := Open(k, "db-peers", ca, decoded)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	k, ca := key(t), []byte("ca-der")
	s, _ := Seal(k, "db-peers", ca, []byte("secret"))
	tampered := s
	ct, _ := base64.StdEncoding.DecodeString(s.Ciphertext)
	ct[0] ^= 1
	tampered.Ciphertext = base64.StdEncoding.EncodeToString(ct)
	// Relabelled: the sealed key of one CA presented as another's. The explicit
	// fingerprint check passes (the label matches the CA offered); the AEAD itself must
	// refuse, since the CA's fingerprint is in its associated data.
	relabelled := s
	relabelled.CASHA256 = Fingerprint([]byte("other-ca"))
	for _, c := range []struct {
		name     string
		key      []byte
		relation string
		ca       []byte
		sealed   Sealed
		want     string
	}{
		{"another seal key", key(t), "db-peers", ca, s, "does not open"},
		{"another relation", k, "other-peers", ca, s, "does not open"},
		{"another CA", k, "db-peers", []byte("other-ca"), s, "is for CA"},
		{"tampered ciphertext", k, "db-peers", ca, tampered, "does not open"},
		{"relabelled to another CA", k, "db-peers", []byte("other-ca"), relabelled, "does not open"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(c.key, c.relation, c.ca, c.sealed)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want an error containing %q", err, c.want)
			}
			if c.want == "is for CA" && (!strings.Contains(err.Error(), Fingerprint(c.ca)[:16]) || strings.Contains(err.Error(), Fingerprint(c.ca))) {
				t.Fatalf("Open: %v, want the CA named by its fingerprint's first 16 digits", err)
			}
			if c.want == "does not open" && !errors.Is(err, ErrWrongKey) {
				t.Fatalf("Open: %v is not ErrWrongKey", err)
			}
		})
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(base64.StdEncoding.EncodeToString(key(t))+"\n"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("c2VjcmV0LXRleHQ="), 0o600)
	if k, err := LoadKey(good); err != nil || len(k) != KeySize {
		t.Fatalf("LoadKey(good) = %d bytes, %v", len(k), err)
	}
	_, err := LoadKey(short)
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") || !strings.Contains(err.Error(), short) {
		t.Fatalf("LoadKey(short) = %v: want an error naming the file and not echoing its content", err)
	}
	// A key file others may read is refused before it is read, naming the key.
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte(base64.StdEncoding.EncodeToString(key(t))+"\n"), 0o644)
	if k, err := LoadKey(open); k != nil || err == nil || !strings.Contains(err.Error(), "ca_seal.key_file") || !strings.Contains(err.Error(), "has mode 0644") {
		t.Fatalf("LoadKey(0644 file) = %d bytes, %v; want an error naming ca_seal.key_file and its mode", len(k), err)
	}
	t.Setenv(EnvKey, base64.StdEncoding.EncodeToString(key(t)))
	if k, err := LoadKey(""); err != nil || len(k) != KeySize {
		t.Fatalf("LoadKey from %s = %d bytes, %v", EnvKey, len(k), err)
	}
	t.Setenv(EnvKey, "")
	if k, err := LoadKey(""); k != nil || err != nil {
		t.Fatalf("LoadKey with nothing configured = %v, %v; want nil, nil", k, err)
	}
}
