package policy

import (
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
)

// policy.units signs per kind of unit: amphorae may hold an amphora ID (a UUID-shaped
// label) and only as servers; controllers neither, and only as clients.
func TestPolicyPerUnitPattern(t *testing.T) {
	rules := Defaults()
	rules.SANs = []string{"*.example.internal"}
	rules.Units = []UnitRule{
		{Match: "amphora/*", SANs: []string{"*-*-*-*-*"}, Profiles: []string{"server"}},
		{Match: "controller/*", Profiles: []string{"client"}, SharedSANs: []string{"octavia-controllers"}},
	}
	pol := MustNew(rules)
	const id = "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"
	claimed := map[string]string{"11111111-2222-3333-4444-555555555555": "amphora/1"}
	tests := []struct {
		name, unit, profile string
		dns                 []string
		refuse              string
		rule                Rule
	}{
		{"an amphora's ID", "amphora/0", "server", []string{id}, "", ""},
		{"an amphora's ID and a group name", "amphora/0", "server", []string{id, "a.example.internal"}, "", ""},
		{"an ID whose last group reads as a unit number", "amphora/0", "server", []string{"0b1c2d3e-4f50-4c5e-8f6a-123456789012"}, "", ""},
		{"which is still reserved for units of other kinds", "web/0", "peer", []string{"0b1c2d3e-4f50-4c5e-8f6a-123456789012"}, "the name of unit", RuleReserved},
		{"an ID another amphora holds", "amphora/0", "server", []string{"11111111-2222-3333-4444-555555555555"}, "which unit amphora/1 holds", RuleHeld},
		{"an amphora as a client", "amphora/0", "client", []string{id}, `profile "client" is not allowed to amphora/0 by policy.units[0]`, RuleProfile},
		{"a controller asking for an amphora ID", "controller/0", "client", []string{id}, "not allowed", RuleNotAllowed},
		{"a controller as a server", "controller/0", "server", nil, "policy.units[1]", RuleProfile},
		{"a controller's shared name", "controller/1", "client", []string{"octavia-controllers"}, "", ""},
		{"the shared name is the controllers' alone", "amphora/0", "server", []string{"octavia-controllers"}, "not allowed", RuleNotAllowed},
		{"a unit of no kind keeps the base rules", "web/0", "peer", []string{"a.example.internal"}, "", ""},
		{"a unit of no kind gets no amphora ID", "web/0", "peer", []string{id}, "not allowed", RuleNotAllowed},
		{"outside a group no kind applies", "", "server", []string{id}, "not allowed", RuleNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cn := tt.unit
			if cn == "" {
				cn = "tool"
			}
			csr := pkitest.MakeCSR(t, pkitest.Request{Subject: pkix.Name{CommonName: cn}, DNS: tt.dns})
			_, err := pol.Check(Request{Unit: tt.unit, CSRPEM: []byte(csr), Profile: tt.profile, Claimed: claimed})
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse)):
				t.Fatalf("Check = %v, want a refusal containing %q", err, tt.refuse)
			case tt.refuse != "" && err.(*Refusal).Rule != tt.rule:
				t.Fatalf("refused by rule %q, want %q", err.(*Refusal).Rule, tt.rule)
			}
		})
	}
	if !pol.AllowsProfile("amphora/3", "server") || pol.AllowsProfile("amphora/3", "peer") || !pol.AllowsProfile("web/0", "peer") {
		t.Fatal("AllowsProfile disagrees with Check")
	}
}

func TestUnitRulesAreValidated(t *testing.T) {
	tests := []struct {
		rule UnitRule
		want string
	}{
		{UnitRule{Match: "amphora/[", SANs: []string{"x"}}, "policy.units[0].match"},
		{UnitRule{Match: "", SANs: []string{"x"}}, "policy.units[0].match"},
		{UnitRule{Match: "amphora/*"}, "policy.units[0]: allows and restricts nothing"},
		{UnitRule{Match: "amphora/*", Profiles: []string{"admin"}}, "policy.units[0].profiles[0]"},
		{UnitRule{Match: "amphora/*", SANs: []string{"a,b"}}, "policy.units[0].sans[0]"},
		{UnitRule{Match: "amphora/*", SharedSANs: []string{"{{.Nope}}"}}, "policy.units[0].shared_sans[0]"},
	}
	for _, tt := range tests {
		r := Defaults()
		r.Units = []UnitRule{tt.rule}
		if _, err := New(r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New = %v, want an error containing %q", err, tt.want)
		}
	}
}

// A unit the deployment names by its ID (amphora/<UUID>) is bound to that ID by a rule
// "{{uuid .ID}}": it may hold its own ID and no other name of that rule; a unit named by
// a number holds none; every other unit is refused it, and the DNS name of a unit named
// by a UUID is reserved for that unit like any unit's.
func TestPolicyBindsANameToTheUnitsID(t *testing.T) {
	rules := Defaults()
	rules.Units = []UnitRule{{Match: "amphora/*", SANs: []string{"{{uuid .ID}}"}}}
	pol := MustNew(rules)
	const a, b = "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50", "0b1c2d3e-4f50-4c5e-8f6a-123456789012"
	tests := []struct {
		name, unit string
		dns        []string
		refuse     string
	}{
		{"its own ID", "amphora/" + a, []string{a}, ""},
		{"its own DNS name", "amphora/" + a, []string{"amphora-" + a}, ""},
		{"another's ID", "amphora/" + a, []string{"0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51"}, "not allowed"},
		{"another's ID whose last group reads as a unit number", "amphora/" + a, []string{b}, "the name of unit"},
		{"an ID-shaped name", "amphora/" + a, []string{"a1-b-c-d-e"}, "not allowed"},
		{"the DNS name of a unit named by a UUID", "amphora/" + a, []string{"amphora-" + b}, "the name of unit amphora/" + b},
		{"an ID to a unit named by a number", "amphora/3", []string{a}, "not allowed"},
		{"an ID to another kind", "web/0", []string{a}, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := pkitest.MakeCSR(t, pkitest.Request{Subject: pkix.Name{CommonName: tt.unit}, DNS: tt.dns})
			_, err := pol.Check(Request{Unit: tt.unit, CSRPEM: []byte(csr), Profile: "peer"})
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse)):
				t.Fatalf("Check = %v, want a refusal containing %q", err, tt.refuse)
			}
		})
	}
	for name, want := range map[string]bool{"amphora/" + a: true, "db/0": true, "amphora/" + strings.ToUpper(a): false,
		"amphora/a1-b-c-d-e": false, "amphora/": false, a: false} {
		if IsUnitName(name) != want {
			t.Errorf("IsUnitName(%q) = %t, want %t", name, !want, want)
		}
	}
}
