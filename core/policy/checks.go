package policy

import (
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

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
	// Verified, if set, keeps this request's CSR once it parsed and its signature
	// verified: a leader checks every pending CSR at every decision, and a signature
	// verifies the same way every time. The caller owns it (protocol.Parsed).
	Verified CSRMemo
}

// CSRMemo keeps a CSR that parse returned; a failed parse is not kept (its message
// names the unit).
type CSRMemo interface {
	Remember(parse func() (*x509.CertificateRequest, error)) (*x509.CertificateRequest, error)
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
	RuleSANCount   Rule = "san_count"   // policy.max_sans
	RuleReserved   Rule = "reserved"    // another unit's name
	RuleHeld       Rule = "held"        // a name another unit's certificate holds
	RuleNotAllowed Rule = "not_allowed" // no policy.sans, shared_sans or uris pattern allows it; email SANs never
	RuleBudget     Rule = "budget"      // the unit holds policy.max_certificates unexpired certificates already
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

// parseCSR is certutil.ParseCSR, kept in req.Verified when the caller keeps one. The
// CSR returned may be shared: read it only.
func parseCSR(req Request) (*x509.CertificateRequest, error) {
	parse := func() (*x509.CertificateRequest, error) { return certutil.ParseCSR(req.CSRPEM, req.Unit) }
	if req.Verified == nil {
		return parse()
	}
	return req.Verified.Remember(parse)
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
	if reason := p.profileFor(req.Unit, req.Profile); reason != "" {
		return refuse(refusal(RuleProfile, "%s", reason))
	}
	csr, err := parseCSR(req)
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
	cn := csr.Subject.CommonName
	if err := certutil.CheckSubject(csr); err != nil {
		return refusal(RuleSubject, "%v", err)
	}
	switch {
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
	k := certutil.KeySpecOf(csr.PublicKey)
	if !slices.Contains(p.rules.Keys[k.Algorithm], k.Size) {
		return refusal(RuleKey, "its key is %s, which policy.keys does not allow (%s)", describeKey(k.Algorithm, k.Size), p.allowedKeys())
	}
	return finding{}
}

func (p *Policy) checkCount(_ Request, csr *x509.CertificateRequest) finding {
	if len(csr.EmailAddresses) > 0 {
		return refusal(RuleNotAllowed, "it asks for email SANs %q; email SANs are never signed", csr.EmailAddresses)
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
			return refusal(RuleNotAllowed, "SAN %q is not allowed by policy.sans, policy.shared_sans or policy.units", raw)
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
			return refusal(RuleNotAllowed, "IP SAN %s is not allowed by policy.sans, policy.shared_sans or policy.units", text)
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
// A policy.units pattern is the operator's word for that kind of unit: a name it
// matches is not reserved (an amphora ID whose last group is all digits reads as a
// unit's DNS name), though still refused while another unit's certificate holds it.
func (p *Policy) judge(unit, name string, claimed map[string]string) (verdict, string) {
	if net.ParseIP(name) == nil {
		switch {
		case unit != "" && name == UnitDNSName(unit):
			return allowed, ""
		case ReservedUnitName(name) && !p.unitRuleMatch(unit, name):
			return reserved, unitOfDNSName(name)
		}
	}
	switch {
	case p.sharedMatch(unit, name):
		return allowed, ""
	case claimed[name] != "" && claimed[name] != unit:
		return held, claimed[name]
	case !p.sansMatch(unit, name):
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

// Exclusive reports whether a name (Normalize'd, or an IP as text) in a unit's
// certificate belongs to that unit alone: every name but a shared one.
func (p *Policy) Exclusive(unit, name string) bool { return !p.sharedMatch(unit, name) }
