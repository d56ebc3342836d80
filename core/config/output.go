package config

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// Output is where certificate files go. Mode is that of tls.crt and ca.crt (octal, as
// "0644"); tls.key is always 0600. Owner and Group (names or numeric ids; empty keeps
// the agent's) are given every file, so a service running as another user reads its key.
type Output struct {
	Dir   string `mapstructure:"dir"`
	Mode  string `mapstructure:"mode"`
	Owner string `mapstructure:"owner"`
	Group string `mapstructure:"group"`
	// Formats asks for files besides tls.key, tls.crt and ca.crt, in the forms consumers
	// read: FormatBundle, FormatPKCS12.
	Formats []string `mapstructure:"formats"`
	// PKCS12PasswordFile holds the password of keystore.p12 and truststore.p12; without
	// it, the environment's TLSRELAY_PKCS12_PASSWORD.
	PKCS12PasswordFile string `mapstructure:"pkcs12_password_file"`
	// PKCS12Legacy encodes them for JVMs older than 8u301 and 11.0.12, which read no
	// AES or PBKDF2 in PKCS#12 (3DES and SHA-1; weak: only where needed).
	PKCS12Legacy bool `mapstructure:"pkcs12_legacy"`
}

// The output formats.
const (
	// FormatBundle: bundle.pem, the certificate, its chain and its key in one file (mode
	// 0600), as haproxy's crt and Octavia's combined certificates read them.
	FormatBundle = "bundle"
	// FormatPKCS12: keystore.p12 (the key and its chain, 0600) and truststore.p12 (the
	// CA bundle), as Java services read them.
	FormatPKCS12 = "pkcs12"
)

// Formats are the output formats, in the order their files are written.
var Formats = []string{FormatBundle, FormatPKCS12}

// checkFormats refuses any name of list that is not a format; key names the list.
func checkFormats(p *problems, key string, list []string) {
	for i, f := range list {
		if !slices.Contains(Formats, f) {
			p.add(fmt.Sprintf("%s[%d]", key, i), "%q is not a format: %s", f, strings.Join(Formats, " or "))
		}
	}
}

// PKCS12PasswordEnv is the environment variable that gives the PKCS#12 password when
// certificate.output.pkcs12_password_file is not set.
const PKCS12PasswordEnv = "TLSRELAY_PKCS12_PASSWORD"

// PKCS12Password reads the password of the PKCS#12 outputs.
func (o Output) PKCS12Password() (string, error) {
	if o.PKCS12PasswordFile == "" {
		if pw, ok := os.LookupEnv(PKCS12PasswordEnv); ok && pw != "" {
			return pw, nil
		}
		return "", fmt.Errorf("certificate.output.pkcs12_password_file: set it (or %s) for the pkcs12 format", PKCS12PasswordEnv)
	}
	b, err := safedir.ReadSecret(o.PKCS12PasswordFile)
	if err != nil {
		return "", fmt.Errorf("certificate.output.pkcs12_password_file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("certificate.output.pkcs12_password_file: %s is empty", o.PKCS12PasswordFile)
	}
	return pw, nil
}

// Wants says whether format is among the formats asked for.
func (o Output) Wants(format string) bool { return slices.Contains(o.Formats, format) }

// IDs resolves Owner and Group to a uid and a gid; -1 for one not set.
func (o Output) IDs() (uid, gid int, err error) {
	if uid, err = userID(o.Owner); err != nil {
		return -1, -1, fmt.Errorf("certificate.output.owner: %w", err)
	}
	if gid, err = groupID(o.Group); err != nil {
		return -1, -1, fmt.Errorf("certificate.output.group: %w", err)
	}
	return uid, gid, nil
}

// userID is a user's uid from its name or number; -1 for "".
func userID(nameOrID string) (int, error) {
	return lookupID(nameOrID, func(name string) (string, error) {
		u, err := user.Lookup(name)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	})
}

// groupID is a group's gid from its name or number; -1 for "".
func groupID(nameOrID string) (int, error) {
	return lookupID(nameOrID, func(name string) (string, error) {
		g, err := user.LookupGroup(name)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	})
}

// lookupID takes a number as it is and looks a name up.
func lookupID(nameOrID string, lookup func(string) (string, error)) (int, error) {
	if nameOrID == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(nameOrID); err == nil && id >= 0 {
		return id, nil
	}
	id, err := lookup(nameOrID)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(id)
}

// FileMode is Output.Mode parsed (validated by Load).
func (o Output) FileMode() os.FileMode {
	m, err := strconv.ParseUint(o.Mode, 8, 32)
	if err != nil {
		return 0o644
	}
	return os.FileMode(m)
}
