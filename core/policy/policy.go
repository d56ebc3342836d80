// Package policy is the signing policy: what a unit may ask the group's CA for. The
// leader and `tlsrelay sign` check every CSR against it before any backend sees the
// CSR, so that every backend signs the same names and refuses the same requests.
//
// A unit's identity is its common name and its DNS name ("db/0" is "db-0"). Names of
// that form are reserved by pattern for the unit they name, whether or not that unit
// has joined yet. Every other name must be allowed by a configured pattern; names a
// unit holds exclusively are refused to every other unit while it holds them.
package policy

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Rules is the policy as configured (the `policy:` section).
type Rules struct {
	// CommonName is the template of a unit's common name (certificate.common_name).
	CommonName string
	// SANs a unit may have besides its own DNS name, exclusively: patterns (see Pattern).
	SANs []string
	// SharedSANs may be held by many units at once (a service name, localhost).
	SharedSANs []string
	// URIs a unit may have as URI SANs (SPIFFE IDs); '*' matches within one path segment.
	URIs []string
	// Keys lists the allowed key sizes per algorithm (ecdsa, rsa, ed25519 with size 0).
	Keys map[string][]int
	// MaxCSRBytes and MaxSANs bound what a CSR may carry; MaxValidity a certificate's life.
	MaxCSRBytes int
	MaxSANs     int
	MaxValidity time.Duration
	// MaxCertificates bounds the unexpired certificates one unit may hold at once (its
	// current one, those it renewed away, revoked or not): a unit that churns keys is
	// refused until one expires, so its records in leader data stay bounded.
	MaxCertificates int
	// Units are rules for the units whose names match a pattern (policy.units).
	Units []UnitRule
}

// Defaults are the rules of the embedded default config.
func Defaults() Rules {
	return Rules{
		CommonName:  "{{.Unit}}",
		Keys:        map[string][]int{"ecdsa": {256, 384}, "rsa": {2048, 3072, 4096}},
		MaxCSRBytes: 16 << 10,
		MaxSANs:     64,
		MaxValidity: 8760 * time.Hour,
		// A unit renewing holds its current certificate and the ones it renewed away
		// until they expire: a few, or some more with short validities and rotations.
		MaxCertificates: 10,
	}
}

// Limits beyond which a configured rule is refused: a validity that overflows day
// counts, limits that would let one CSR exhaust the leader.
const (
	LimitValidity = 100 * 8760 * time.Hour
	LimitCSRBytes = 1 << 20
	LimitSANs     = 10000
	// LimitCertificates: a unit's records of what it holds stay within one etcd value.
	LimitCertificates = 1000
)

// Policy is a compiled set of Rules.
type Policy struct {
	rules       Rules
	fingerprint string
	cn          *pattern
	sans        []*pattern
	shared      []*pattern
	uris        []*pattern
	units       []unitRule
}

// New compiles rules. Errors name the key at fault, as `policy.sans[1]`.
func New(r Rules) (*Policy, error) {
	p := &Policy{rules: r}
	var errs []string
	bad := func(key, format string, args ...any) { errs = append(errs, key+": "+fmt.Sprintf(format, args...)) }
	var err error
	if p.cn, err = compile(r.CommonName, kindName); err != nil {
		bad("certificate.common_name", "%v", err)
	}
	compileAll := func(key string, list []string, kind patternKind) []*pattern {
		var out []*pattern
		for i, s := range list {
			pt, err := compile(s, kind)
			if err != nil {
				bad(fmt.Sprintf("%s[%d]", key, i), "%v", err)
				continue
			}
			out = append(out, pt)
		}
		return out
	}
	p.sans = compileAll("policy.sans", r.SANs, kindSAN)
	p.shared = compileAll("policy.shared_sans", r.SharedSANs, kindSAN)
	p.uris = compileAll("policy.uris", r.URIs, kindURI)
	p.units = compileUnitRules(r.Units, bad)
	if len(r.Keys) == 0 {
		bad("policy.keys", "allows no key: list sizes per algorithm, like {ecdsa: [256, 384]}")
	}
	for alg, sizes := range r.Keys {
		if err := checkKeyRule(alg, sizes); err != nil {
			bad("policy.keys."+alg, "%v", err)
		}
	}
	if r.MaxCSRBytes < 1024 || r.MaxCSRBytes > LimitCSRBytes {
		bad("policy.max_csr_bytes", "%d must be between 1024 and %d", r.MaxCSRBytes, LimitCSRBytes)
	}
	if r.MaxSANs < 1 || r.MaxSANs > LimitSANs {
		bad("policy.max_sans", "%d must be between 1 and %d", r.MaxSANs, LimitSANs)
	}
	if r.MaxCertificates < 2 || r.MaxCertificates > LimitCertificates {
		bad("policy.max_certificates", "%d must be between 2 (a certificate and its renewal) and %d", r.MaxCertificates, LimitCertificates)
	}
	if r.MaxValidity < time.Hour || r.MaxValidity > LimitValidity {
		bad("policy.max_validity", "%s must be between 1h and %s", r.MaxValidity, LimitValidity)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	canonical, err := json.Marshal(r) // maps in key order: equal rules, equal text
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	sum := sha256.Sum256(canonical)
	p.fingerprint = hex.EncodeToString(sum[:8])
	return p, nil
}

// Fingerprint names the rules: equal rules have equal fingerprints. A refusal records
// the fingerprint of the rules that refused it, so that a leader whose rules have
// changed (an operator mended the policy) judges the CSR again at once, rather than
// leaving the unit to wait out protocol.RejectionRetry.
func (p *Policy) Fingerprint() string { return p.fingerprint }

// MustNew is New for rules known to be valid (tests, defaults).
func MustNew(r Rules) *Policy {
	p, err := New(r)
	if err != nil {
		panic(err)
	}
	return p
}

// Rules returns the rules the policy was compiled from.
func (p *Policy) Rules() Rules { return p.rules }

func checkKeyRule(alg string, sizes []int) error {
	for _, s := range sizes {
		var ok bool
		switch alg {
		case "ecdsa":
			ok = s == 256 || s == 384 || s == 521
		case "rsa":
			ok = s >= 2048 && s <= certutil.MaxRSABits
		case "ed25519":
			ok = s == 0
		default:
			return fmt.Errorf("%q is not one of ecdsa, rsa, ed25519", alg)
		}
		if !ok {
			return fmt.Errorf("size %d is not a %s key size this tool signs", s, alg)
		}
	}
	return nil
}

// Validity is the lifetime to sign for: the request's, capped by policy.max_validity and
// by what remains of the CA's own lifetime (a leaf never outlives its CA).
func (p *Policy) Validity(requested time.Duration, ca *x509.Certificate, now time.Time) time.Duration {
	v := min(requested, p.rules.MaxValidity)
	if ca != nil {
		v = min(v, ca.NotAfter.Sub(now))
	}
	return v
}

func describeKey(alg string, size int) string {
	if size == 0 {
		return alg
	}
	return fmt.Sprintf("%s %d", alg, size)
}

func (p *Policy) allowedKeys() string {
	var parts []string
	for _, alg := range []string{"ecdsa", "rsa", "ed25519"} {
		sizes := p.rules.Keys[alg]
		if len(sizes) == 0 {
			continue
		}
		if alg == "ed25519" {
			parts = append(parts, alg)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %v", alg, sizes))
	}
	return strings.Join(parts, ", ")
}

// AllowsKey reports whether policy.keys allows a key spec (for config validation).
func (p *Policy) AllowsKey(alg string, size int) bool {
	return slices.Contains(p.rules.Keys[alg], size)
}

// AllowsSAN reports whether unit may ask for san (a DNS name or an IP), ignoring claims.
func (p *Policy) AllowsSAN(unit, san string) bool {
	name := Normalize(san)
	if ip := net.ParseIP(san); ip != nil {
		name = ip.String()
	}
	v, _ := p.judge(unit, name, nil)
	return v == allowed
}

// Normalize is how names are compared: lower case, without a trailing dot.
func Normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// UnitDNSName is a unit's name as a DNS label: "db/0" is "db-0".
func UnitDNSName(unit string) string { return strings.ReplaceAll(unit, "/", "-") }

// UnitID is what follows the application in a unit's name: "0" of "db/0", the UUID of
// "amphora/9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50". Where the deployment names a unit by
// an ID it made (Octavia's amphora ID), the unit's name, and so its etcd user, is the
// identity a name can be bound to ({{.ID}} in a pattern).
func UnitID(unit string) string {
	_, id, _ := strings.Cut(unit, "/")
	return id
}

// uuidForm is a UUID as tlsrelay writes and accepts it: lower case, canonical form.
const uuidForm = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`

var (
	unitName    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*/([0-9]+|` + uuidForm + `)$`)
	unitDNSName = regexp.MustCompile(`^([a-z0-9][a-z0-9.-]*?)-([0-9]+|` + uuidForm + `)$`)
	uuidName    = regexp.MustCompile(`^` + uuidForm + `$`)
)

// IsUnitName reports whether s is a unit name: <application>/<number>, or
// <application>/<UUID> for a unit the deployment names by an ID (an amphora's).
func IsUnitName(s string) bool { return unitName.MatchString(s) }

// IsUUID reports whether s is a UUID in canonical lower-case form.
func IsUUID(s string) bool { return uuidName.MatchString(s) }

// ReservedUnitName reports whether a name (after Normalize) is the DNS name of some
// unit, joined or not: <application>-<number> or <application>-<UUID>.
func ReservedUnitName(name string) bool { return unitDNSName.MatchString(Normalize(name)) }

func unitOfDNSName(name string) string {
	m := unitDNSName.FindStringSubmatch(Normalize(name))
	if m == nil {
		return name
	}
	return m[1] + "/" + m[2]
}
