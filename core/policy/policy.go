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
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/memo"
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
}

// Defaults are the rules of the embedded default config.
func Defaults() Rules {
	return Rules{
		CommonName:  "{{.Unit}}",
		Keys:        map[string][]int{"ecdsa": {256, 384}, "rsa": {2048, 3072, 4096}},
		MaxCSRBytes: 16 << 10,
		MaxSANs:     64,
		MaxValidity: 8760 * time.Hour,
	}
}

// Limits beyond which a configured rule is refused: a validity that overflows day
// counts, limits that would let one CSR exhaust the leader.
const (
	LimitValidity = 100 * 8760 * time.Hour
	LimitCSRBytes = 1 << 20
	LimitSANs     = 10000
)

// Policy is a compiled set of Rules.
type Policy struct {
	rules  Rules
	cn     *pattern
	sans   []*pattern
	shared []*pattern
	uris   []*pattern
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
	if r.MaxValidity < time.Hour || r.MaxValidity > LimitValidity {
		bad("policy.max_validity", "%s must be between 1h and %s", r.MaxValidity, LimitValidity)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return p, nil
}

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

// Request is one CSR to check.
type Request struct {
	// Unit asks; "" outside a group (`tlsrelay sign` without --unit): then no unit's
	// reserved name may be asked for.
	Unit    string
	CSRPEM  []byte
	Profile string
	// Claimed maps names (Normalize'd DNS names, IPs as text) to the unit whose current
	// certificate holds them exclusively.
	Claimed map[string]string
}

// Refusal is why a CSR is not signed. It is final for that CSR: the unit must send
// another.
type Refusal struct {
	Unit   string
	Rule   Rule
	Reason string
}

// Rule names the check that refused a CSR (for metrics and for tests that must tell a
// refusal for the right reason from one for another).
type Rule string

// The rules, one per check.
const (
	RuleSize       Rule = "size"        // policy.max_csr_bytes
	RuleProfile    Rule = "profile"     // not server, client or peer
	RuleMalformed  Rule = "malformed"   // not a CSR, or its signature does not verify
	RuleSubject    Rule = "subject"     // not exactly the common name the template gives
	RuleKey        Rule = "key"         // policy.keys
	RuleSANCount   Rule = "san_count"   // policy.max_sans, or email SANs
	RuleReserved   Rule = "reserved"    // another unit's name
	RuleHeld       Rule = "held"        // a name another unit's certificate holds
	RuleNotAllowed Rule = "not_allowed" // no policy.sans, shared_sans or uris pattern allows it
)

// finding is one check's refusal: the rule and the reason; a zero finding passes.
type finding struct {
	rule   Rule
	reason string
}

func refusal(rule Rule, format string, args ...any) finding {
	return finding{rule: rule, reason: fmt.Sprintf(format, args...)}
}

func (r *Refusal) Error() string {
	if r.Unit == "" {
		return "CSR refused: " + r.Reason
	}
	return fmt.Sprintf("CSR of %s refused: %s", r.Unit, r.Reason)
}

// verifiedCSRs holds CSRs that parsed and whose signature verified, by their PEM: the
// leader checks every pending CSR at every decision, and a CSR's signature verifies the
// same way every time. Failures are not kept (their message names the unit).
var verifiedCSRs = memo.New[*x509.CertificateRequest](16384)

// parseCSR is certutil.ParseCSR, remembered. The CSR returned is shared: read it only.
func parseCSR(csrPEM []byte, unit string) (*x509.CertificateRequest, error) {
	return verifiedCSRs.Remember(memo.KeyOf(csrPEM), func() (*x509.CertificateRequest, error) {
		return certutil.ParseCSR(csrPEM, unit)
	})
}

// Check returns the parsed CSR, or a *Refusal saying why it may not be signed.
func (p *Policy) Check(req Request) (*x509.CertificateRequest, error) {
	refuse := func(f finding) (*x509.CertificateRequest, error) {
		return nil, &Refusal{Unit: req.Unit, Rule: f.rule, Reason: f.reason}
	}
	if n := len(req.CSRPEM); n > p.rules.MaxCSRBytes {
		return refuse(refusal(RuleSize, "the CSR is %d bytes, more than policy.max_csr_bytes (%d)", n, p.rules.MaxCSRBytes))
	}
	switch req.Profile {
	case "server", "client", "peer":
	default:
		return refuse(refusal(RuleProfile, "profile %q is not one of server, client, peer", req.Profile))
	}
	csr, err := parseCSR(req.CSRPEM, req.Unit)
	if err != nil {
		return refuse(refusal(RuleMalformed, "%v", strings.TrimPrefix(err.Error(), "InvalidArgument: ")))
	}
	for _, check := range []func(Request, *x509.CertificateRequest) finding{
		p.checkSubject, p.checkKey, p.checkCount, p.checkDNSNames, p.checkIPs, p.checkURIs,
	} {
		if f := check(req, csr); f.rule != "" {
			return refuse(f)
		}
	}
	return csr, nil
}

func (p *Policy) checkSubject(req Request, csr *x509.CertificateRequest) finding {
	cns, cn := certutil.CountCommonNames(csr), csr.Subject.CommonName
	switch {
	case cns != 1:
		return refusal(RuleSubject, "the subject has %d common names; exactly one is signed", cns)
	case req.Unit != "":
		if want, err := p.cn.render(req.Unit); err != nil || cn != want {
			return refusal(RuleSubject, "it asks for common name %q; it may ask only for %q", cn, want)
		}
	case ReservedUnitName(cn) || IsUnitName(cn):
		return refusal(RuleReserved, "common name %q names a unit; sign it with --unit", cn)
	}
	return finding{}
}

func (p *Policy) checkKey(_ Request, csr *x509.CertificateRequest) finding {
	alg, size := KeyOf(csr.PublicKey)
	if !slices.Contains(p.rules.Keys[alg], size) {
		return refusal(RuleKey, "its key is %s, which policy.keys does not allow (%s)", describeKey(alg, size), p.allowedKeys())
	}
	return finding{}
}

func (p *Policy) checkCount(_ Request, csr *x509.CertificateRequest) finding {
	if len(csr.EmailAddresses) > 0 {
		return refusal(RuleSANCount, "it asks for email SANs %q; email SANs are never signed", csr.EmailAddresses)
	}
	n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.URIs)
	if n > p.rules.MaxSANs {
		return refusal(RuleSANCount, "it asks for %d SANs, more than policy.max_sans (%d)", n, p.rules.MaxSANs)
	}
	return finding{}
}

func (p *Policy) checkDNSNames(req Request, csr *x509.CertificateRequest) finding {
	for _, raw := range csr.DNSNames {
		if err := certutil.CheckSAN(raw, "san"); err != nil || net.ParseIP(raw) != nil {
			return refusal(RuleMalformed, "SAN %q is not a DNS name", raw)
		}
		switch verdict, other := p.judge(req.Unit, Normalize(raw), req.Claimed); verdict {
		case reserved:
			return refusal(RuleReserved, "it asks for %q, the name of unit %s", raw, other)
		case held:
			return refusal(RuleHeld, "it asks for %q, which unit %s holds", raw, other)
		case notAllowed:
			return refusal(RuleNotAllowed, "SAN %q is not allowed by policy.sans or policy.shared_sans", raw)
		}
	}
	return finding{}
}

func (p *Policy) checkIPs(req Request, csr *x509.CertificateRequest) finding {
	for _, ip := range csr.IPAddresses {
		text := ip.String()
		switch verdict, other := p.judge(req.Unit, text, req.Claimed); verdict {
		case held:
			return refusal(RuleHeld, "it asks for IP %s, which unit %s holds", text, other)
		case notAllowed:
			return refusal(RuleNotAllowed, "IP SAN %s is not allowed by policy.sans or policy.shared_sans", text)
		}
	}
	return finding{}
}

// verdict is what the policy says of one name a unit asks for.
type verdict int

const (
	allowed    verdict = iota
	reserved           // another unit's name, by pattern
	held               // a name another unit's certificate holds alone
	notAllowed         // no pattern allows it
)

// judge rules on one name (Normalize'd DNS name, or an IP as text) for unit, in the
// order every caller needs: its own name, names reserved for other units, shared
// names, names another unit holds, the unit's patterns. other names the unit concerned.
func (p *Policy) judge(unit, name string, claimed map[string]string) (verdict, string) {
	if net.ParseIP(name) == nil {
		switch {
		case unit != "" && name == UnitDNSName(unit):
			return allowed, ""
		case ReservedUnitName(name):
			return reserved, unitOfDNSName(name)
		}
	}
	switch {
	case p.sharedMatch(unit, name):
		return allowed, ""
	case claimed[name] != "" && claimed[name] != unit:
		return held, claimed[name]
	case !matchAny(p.sans, unit, name):
		return notAllowed, ""
	}
	return allowed, ""
}

func (p *Policy) checkURIs(req Request, csr *x509.CertificateRequest) finding {
	for _, u := range csr.URIs {
		if !matchAny(p.uris, req.Unit, u.String()) {
			return refusal(RuleNotAllowed, "URI SAN %q is not allowed by policy.uris", u.String())
		}
	}
	return finding{}
}

func (p *Policy) sharedMatch(unit, name string) bool { return matchAny(p.shared, unit, name) }

// Exclusive reports whether a name (Normalize'd, or an IP as text) in a unit's
// certificate belongs to that unit alone: every name but a shared one.
func (p *Policy) Exclusive(unit, name string) bool { return !p.sharedMatch(unit, name) }

// Validity is the lifetime to sign for: the request's, capped by policy.max_validity and
// by what remains of the CA's own lifetime (a leaf never outlives its CA).
func (p *Policy) Validity(requested time.Duration, ca *x509.Certificate, now time.Time) time.Duration {
	v := min(requested, p.rules.MaxValidity)
	if ca != nil {
		v = min(v, ca.NotAfter.Sub(now))
	}
	return v
}

// KeyOf names a public key's algorithm and size as policy.keys does.
func KeyOf(pub any) (alg string, size int) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa", k.Curve.Params().BitSize
	case *rsa.PublicKey:
		return "rsa", k.N.BitLen()
	case ed25519.PublicKey:
		return "ed25519", 0
	}
	return fmt.Sprintf("%T", pub), 0
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

var (
	unitName    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*/[0-9]+$`)
	unitDNSName = regexp.MustCompile(`^([a-z0-9][a-z0-9.-]*)-([0-9]+)$`)
)

// IsUnitName reports whether s is a unit name: <application>/<number>.
func IsUnitName(s string) bool { return unitName.MatchString(s) }

// ReservedUnitName reports whether a name (after Normalize) is the DNS name of some
// unit, joined or not: <application>-<number>.
func ReservedUnitName(name string) bool { return unitDNSName.MatchString(Normalize(name)) }

func unitOfDNSName(name string) string {
	m := unitDNSName.FindStringSubmatch(Normalize(name))
	if m == nil {
		return name
	}
	return m[1] + "/" + m[2]
}
