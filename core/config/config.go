// Package config loads a tlsrelay deployment: the embedded default, then the operator's
// YAML file, then TLSRELAY_* environment variables, decoded strictly (an unknown key is
// an error) and validated with errors that name the file and the key.
package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
)

// Config is one unit's deployment.
type Config struct {
	Unit        string      `mapstructure:"unit"`
	StateDir    string      `mapstructure:"state_dir"`
	Relation    Relation    `mapstructure:"relation"`
	Certificate Certificate `mapstructure:"certificate"`
	Policy      Policy      `mapstructure:"policy"`
	// Kinds are the kinds of unit of a group whose units differ (Octavia's controllers
	// and amphorae), by application name: see ForUnit.
	Kinds   map[string]Kind   `mapstructure:"kinds"`
	CASeal  CASeal            `mapstructure:"ca_seal"`
	CA      CA                `mapstructure:"ca"`
	Roles   Roles             `mapstructure:"roles"`
	Plugins map[string]Plugin `mapstructure:"plugins"`
	// Secrets are fetched through the secrets backend and written out, then fetched
	// again every SecretsRefresh.
	Secrets        []Secret      `mapstructure:"secrets"`
	SecretsRefresh time.Duration `mapstructure:"secrets_refresh"`

	// PluginIdle stops a plugin process no call has used for this long (a unit needs its
	// plugins once per renewal); it starts again when needed. The leader's signer stays.
	// 0 keeps plugins running.
	PluginIdle time.Duration `mapstructure:"plugin_idle"`

	// Audit is the leader's audit trail (core/audit): off when Path is empty.
	Audit Audit `mapstructure:"audit"`

	// Source names where the config came from, for error messages.
	Source string `mapstructure:"-"`
	// Warnings are problems that do not stop the unit: TLSRELAY_* variables that
	// name no key (a typo would otherwise be ignored in silence).
	Warnings []string `mapstructure:"-"`
}

// Audit says where a leading unit records what it signs, rejects, imports and revokes.
type Audit struct {
	Path     string `mapstructure:"path"`
	MaxBytes int64  `mapstructure:"max_bytes"` // the file is rotated at this size
	Keep     int    `mapstructure:"keep"`      // rotated files kept
}

// Relation selects the peer-messaging store.
type Relation struct {
	Name string `mapstructure:"name"`
	// Store is embedded (a single-member etcd inside tlsrelay, data in state_dir/etcd),
	// etcd (an existing cluster) or memory (one process).
	Store string `mapstructure:"store"`
	// LeaderEligible units campaign to lead and sign; others only ask for certificates.
	LeaderEligible bool `mapstructure:"leader_eligible"`
	Etcd           Etcd `mapstructure:"etcd"`
}

// The relation stores.
const (
	StoreEmbedded = "embedded"
	StoreEtcd     = "etcd"
	StoreMemory   = "memory"
)

// Etcd is how to reach an etcd cluster.
type Etcd struct {
	Endpoints []string `mapstructure:"endpoints"`
	TLS       EtcdTLS  `mapstructure:"tls"`
	Username  string   `mapstructure:"username"`
	Password  string   `mapstructure:"password"`
	// PasswordFile holds the password (trailing newline ignored), so it stays out of
	// the YAML and the environment.
	PasswordFile string        `mapstructure:"password_file"`
	LeaseTTL     time.Duration `mapstructure:"lease_ttl"`
	// QuotaBytes is the cluster's --quota-backend-bytes, what status and the metrics
	// measure its database against.
	QuotaBytes int64 `mapstructure:"quota_bytes"`
}

// EtcdTLS names PEM files: the CA of etcd's server certificate, and a client certificate.
type EtcdTLS struct {
	CAFile   string `mapstructure:"ca_file"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// CASeal is the key that seals the CA key in leader data, so that a new leader on another
// host signs with the same CA. KeyFile holds 32 random bytes, base64; the environment
// variable TLSRELAY_CA_SEAL_KEY may hold them instead.
type CASeal struct {
	KeyFile string `mapstructure:"key_file"`
}

// CA, when Ref is set, is the group's CA held by the secrets backend (a Barbican
// certificate container holding the CA certificate and key): whichever unit leads
// fetches it and imports it into its signer, so every leader signs with the same CA.
type CA struct {
	Ref string `mapstructure:"ref"`
	// RotateBefore: the leader rotates the group's CA when less than this is left of
	// its life (and less than a third of it); 0 never.
	RotateBefore time.Duration `mapstructure:"rotate_before"`
	// RotationTrustTimeout: a CA rotation's trust phase waits at most this long for
	// the units holding a certificate to trust the new CA.
	RotationTrustTimeout time.Duration `mapstructure:"rotation_trust_timeout"`
	// RotationReissueTimeout: a CA rotation's reissue phase waits at most this long
	// for every unit to present a certificate of the new CA; the units still missing
	// are named, their certificates of the old CA revoked, and the old CA leaves the
	// bundle. Every rotation ends.
	RotationReissueTimeout time.Duration `mapstructure:"rotation_reissue_timeout"`
	// RemoteRecheck: a leader whose signer's CA is remote (custody remote) loads it
	// again this often, and rotates the group when its service has moved to another CA.
	RemoteRecheck time.Duration `mapstructure:"remote_recheck"`
	// RevokeDepartedAfter: the certificate of a unit that left the relation is revoked
	// (put in the group's CRL) once it has been gone this long; 0 at once.
	RevokeDepartedAfter time.Duration `mapstructure:"revoke_departed_after"`
	// ChainCRLFile holds the CRLs of the CAs above a group CA that is an intermediate
	// (PEM, the enterprise's root and issuing CAs'): a leader publishes those its chain
	// signed, and every unit writes them in ca.crl after the group's, as haproxy and
	// nginx check the CRL of every CA in a chain. Read again when it changes.
	ChainCRLFile string `mapstructure:"chain_crl_file"`
}

// Certificate is what the unit asks for and where it writes the result.
type Certificate struct {
	CommonName string        `mapstructure:"common_name"`
	SANs       []string      `mapstructure:"sans"`
	Key        Key           `mapstructure:"key"`
	Profile    string        `mapstructure:"profile"`
	Validity   time.Duration `mapstructure:"validity"`
	RenewAt    float64       `mapstructure:"renew_at"`
	// RenewJitter spreads renewals: each certificate is renewed up to this fraction of
	// its lifetime before RenewAt, by its serial.
	RenewJitter float64 `mapstructure:"renew_jitter"`
	// KeyRotation is "always" (a new key per certificate) or "never" (renewals keep it).
	KeyRotation string `mapstructure:"key_rotation"`
	Output      Output `mapstructure:"output"`
	// OnChange is a shell command run after the unit's files change (a new certificate
	// or CA bundle), bounded by OnChangeTimeout; its failure is logged and shown in
	// status, and never holds up renewal.
	OnChange        string        `mapstructure:"on_change"`
	OnChangeTimeout time.Duration `mapstructure:"on_change_timeout"`
}

// Policy is what the leader signs (core/policy): which SANs a unit may ask for besides
// its own name, which keys, and limits. See configs/tlsrelay.yaml.
type Policy struct {
	SANs        []string         `mapstructure:"sans"`
	SharedSANs  []string         `mapstructure:"shared_sans"`
	URIs        []string         `mapstructure:"uris"`
	Keys        map[string][]int `mapstructure:"keys"`
	MaxCSRBytes int              `mapstructure:"max_csr_bytes"`
	MaxSANs     int              `mapstructure:"max_sans"`
	MaxValidity time.Duration    `mapstructure:"max_validity"`
	// MaxCertificates bounds the unexpired certificates one unit holds at once.
	MaxCertificates int `mapstructure:"max_certificates"`
	// Units widen or narrow the policy for the units whose name matches a pattern.
	Units []PolicyUnit `mapstructure:"units"`
}

// PolicyUnit is a rule of policy.units (policy.UnitRule).
type PolicyUnit struct {
	Match      string   `mapstructure:"match"`
	SANs       []string `mapstructure:"sans"`
	SharedSANs []string `mapstructure:"shared_sans"`
	Profiles   []string `mapstructure:"profiles"`
}

// Rules is the policy with the certificate's common name template.
func (c *Config) Rules() policy.Rules {
	p := c.Policy
	units := make([]policy.UnitRule, len(p.Units))
	for i, u := range p.Units {
		units[i] = policy.UnitRule(u)
	}
	return policy.Rules{CommonName: c.Certificate.CommonName, SANs: p.SANs, SharedSANs: p.SharedSANs, URIs: p.URIs,
		Keys: p.Keys, MaxCSRBytes: p.MaxCSRBytes, MaxSANs: p.MaxSANs, MaxValidity: p.MaxValidity, MaxCertificates: p.MaxCertificates, Units: units}
}

// SigningPolicy compiles the policy (validated by Load).
func (c *Config) SigningPolicy() (*policy.Policy, error) {
	p, err := policy.New(c.Rules())
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", c.Source, err)
	}
	return p, nil
}

// Key is the private key to generate.
type Key struct {
	Algorithm string `mapstructure:"algorithm"`
	Size      int    `mapstructure:"size"`
}

// Secret is certificate material held by the secrets backend, and where it goes.
type Secret struct {
	Name   string       `mapstructure:"name"`
	Ref    string       `mapstructure:"ref"`
	Output SecretOutput `mapstructure:"output"`
}

// SecretOutput says where a fetched secret is written: Dir gets tls.crt, tls.key,
// chain.crt and bundle.pem; a path given for one part puts that part there instead.
// The key and the bundle (which holds the key) are written 0600.
type SecretOutput struct {
	Dir    string `mapstructure:"dir"`
	Cert   string `mapstructure:"cert"`
	Key    string `mapstructure:"key"`
	Chain  string `mapstructure:"chain"`
	Bundle string `mapstructure:"bundle"`
}

// Roles names the backend for each role.
type Roles struct {
	CSR     string `mapstructure:"csr"`
	Signer  string `mapstructure:"signer"`
	Secrets string `mapstructure:"secrets"`
}

// Role is one of the jobs a backend does.
type Role string

// The roles.
const (
	RoleCSR     Role = "csr"
	RoleSigner  Role = "signer"
	RoleSecrets Role = "secrets"
)

// Backend returns the plugin name configured for a role ("" when none).
func (r Roles) Backend(role Role) string {
	switch role {
	case RoleCSR:
		return r.CSR
	case RoleSigner:
		return r.Signer
	case RoleSecrets:
		return r.Secrets
	}
	return ""
}

// Plugin is how to run one backend: built into the tlsrelay binary, or an external
// binary pinned by its SHA-256.
type Plugin struct {
	Builtin bool           `mapstructure:"builtin"`
	Command string         `mapstructure:"command"`
	SHA256  string         `mapstructure:"sha256"`
	Config  map[string]any `mapstructure:"config"`
	// Env names the host's environment variables an external plugin may see, beyond
	// PATH, HOME, LANG, LC_ALL, TZ and TMPDIR (OS_PASSWORD, say). Built-ins see all.
	Env []string `mapstructure:"env"`
}

// Error is one validation problem: the key and what is wrong with it.
type Error struct {
	Source string
	Key    string
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("config %s: %s: %s", e.Source, e.Key, e.Msg) }

// problems gathers validation errors so the operator sees all of them at once.
type problems struct {
	source string
	errs   []error
}

func (p *problems) add(key, format string, args ...any) {
	p.errs = append(p.errs, &Error{Source: p.source, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error { return errors.Join(p.errs...) }
