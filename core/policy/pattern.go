package policy

import (
	"fmt"
	"net"
	"path"
	"strings"
	"text/template"
)

// A pattern is a Go template rendered for the unit asking ({{.Unit}} "db/0",
// {{.DNSName}} "db-0", {{.ID}} "0"; {{uuid .ID}} is the ID if it is a UUID, and renders
// nothing any name matches otherwise), then matched:
//   - SANs: an IP address matches itself, a CIDR range the addresses in it; a DNS
//     pattern matches names with as many labels, '*' matching within one label
//     ("*.db.internal" matches "a.db.internal", not "a.b.db.internal"); names compare
//     case-insensitively without a trailing dot. A wildcard SAN ("*.db.internal")
//     matches only a pattern that is exactly it.
//   - URIs: '*' matches within one path segment ("spiffe://corp/{{.Unit}}/*").
type pattern struct {
	source string
	tmpl   *template.Template
	kind   patternKind
	// static is the pattern when it holds no template: rendered once, not at every
	// match (the leader matches every SAN of every CSR).
	static    string
	hasStatic bool
}

type patternKind int

const (
	kindName patternKind = iota // a common name: rendered and compared exactly
	kindSAN
	kindURI
)

func compile(source string, kind patternKind) (*pattern, error) {
	if strings.TrimSpace(source) == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	t, err := template.New("pattern").Option("missingkey=error").Funcs(patternFuncs).Parse(source)
	if err != nil {
		return nil, err
	}
	p := &pattern{source: source, tmpl: t, kind: kind}
	rendered, err := p.render(sampleUnit)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(source, "{{") {
		p.static, p.hasStatic = rendered, true
	}
	if kind == kindSAN {
		if _, _, err := net.ParseCIDR(rendered); err != nil && net.ParseIP(rendered) == nil {
			if strings.ContainsAny(rendered, "/,= \n") {
				return nil, fmt.Errorf("%q is neither an IP, a CIDR range nor a DNS name pattern", source)
			}
			if ReservedUnitName(rendered) && !strings.Contains(source, "{{") {
				return nil, fmt.Errorf("%q is a unit's name: it is reserved for that unit", source)
			}
		}
	}
	if _, err := path.Match(rendered, ""); kind != kindName && err != nil {
		return nil, fmt.Errorf("%q: %v", source, err)
	}
	return p, nil
}

// sampleUnit is the unit a pattern is rendered for when it is compiled: one named by a
// UUID, so that every template function renders.
const sampleUnit = "app/00000000-0000-4000-8000-000000000000"

// patternFuncs are the functions a pattern may call.
var patternFuncs = template.FuncMap{
	// uuid is s if it is a UUID, else an error: the pattern then matches no name. A
	// rule "{{uuid .ID}}" binds exactly one name, the unit's own ID, to units that the
	// deployment names by their ID, and nothing to any other.
	"uuid": func(s string) (string, error) {
		if !IsUUID(s) {
			return "", fmt.Errorf("%q is not a UUID", s)
		}
		return s, nil
	},
}

func (p *pattern) render(unit string) (string, error) {
	if p.hasStatic {
		return p.static, nil
	}
	var b strings.Builder
	data := struct{ Unit, DNSName, ID string }{unit, UnitDNSName(unit), UnitID(unit)}
	if err := p.tmpl.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// match reports whether name (Normalize'd DNS name, IP as text, or URI) matches the
// pattern rendered for unit.
func (p *pattern) match(unit, name string) bool {
	r, err := p.render(unit)
	if err != nil {
		return false
	}
	switch p.kind {
	case kindURI:
		return segmentsMatch(r, name, "/")
	case kindSAN:
		if ip := net.ParseIP(name); ip != nil {
			if _, cidr, err := net.ParseCIDR(r); err == nil {
				return cidr.Contains(ip)
			}
			pip := net.ParseIP(r)
			return pip != nil && pip.Equal(ip)
		}
		r = Normalize(r)
		if strings.Contains(name, "*") {
			return r == name
		}
		return segmentsMatch(r, name, ".")
	}
	return r == name
}

// segmentsMatch matches name against pattern part by part, split on sep, with
// path.Match's rules within a part.
func segmentsMatch(pattern, name, sep string) bool {
	pp, np := strings.Split(pattern, sep), strings.Split(name, sep)
	if len(pp) != len(np) {
		return false
	}
	for i := range pp {
		if ok, err := path.Match(pp[i], np[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

func matchAny(ps []*pattern, unit, name string) bool {
	for _, p := range ps {
		if p.match(unit, name) {
			return true
		}
	}
	return false
}
