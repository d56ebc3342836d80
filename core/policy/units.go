package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// UnitRule widens or narrows the policy for the units whose name matches a pattern
// (`policy.units`): a group of several kinds (controllers and amphorae) signs names
// and profiles per kind. Its SANs and SharedSANs are allowed to those units besides
// policy.sans and policy.shared_sans; Profiles, when set, are the only profiles they
// may ask for.
type UnitRule struct {
	// Match is a unit name pattern with path.Match's rules: "amphora/*".
	Match      string
	SANs       []string
	SharedSANs []string
	Profiles   []string
}

// unitRule is a compiled UnitRule.
type unitRule struct {
	match    string
	sans     []*pattern
	shared   []*pattern
	profiles []string
}

// compileUnitRules compiles rules; bad names the key at fault.
func compileUnitRules(rules []UnitRule, bad func(key, format string, args ...any)) []unitRule {
	out := make([]unitRule, 0, len(rules))
	for i, r := range rules {
		key := fmt.Sprintf("policy.units[%d]", i)
		if _, err := path.Match(r.Match, ""); err != nil || strings.TrimSpace(r.Match) == "" {
			bad(key+".match", "%q is not a unit name pattern like amphora/*", r.Match)
			continue
		}
		for j, pr := range r.Profiles {
			switch pr {
			case "server", "client", "peer":
			default:
				bad(fmt.Sprintf("%s.profiles[%d]", key, j), "%q is not one of server, client, peer", pr)
			}
		}
		if len(r.SANs)+len(r.SharedSANs)+len(r.Profiles) == 0 {
			bad(key, "allows and restricts nothing: give sans, shared_sans or profiles")
		}
		u := unitRule{match: r.Match, profiles: r.Profiles}
		for j, s := range r.SANs {
			if pt, err := compile(s, kindSAN); err != nil {
				bad(fmt.Sprintf("%s.sans[%d]", key, j), "%v", err)
			} else {
				u.sans = append(u.sans, pt)
			}
		}
		for j, s := range r.SharedSANs {
			if pt, err := compile(s, kindSAN); err != nil {
				bad(fmt.Sprintf("%s.shared_sans[%d]", key, j), "%v", err)
			} else {
				u.shared = append(u.shared, pt)
			}
		}
		out = append(out, u)
	}
	return out
}

func (r unitRule) applies(unit string) bool {
	ok, _ := path.Match(r.match, unit)
	return unit != "" && ok
}

// ruleMatch is whether a pattern of base, or of a policy.units rule for unit (the
// patterns of picks), matches name.
func (p *Policy) ruleMatch(unit, name string, base []*pattern, pick func(unitRule) []*pattern) bool {
	if matchAny(base, unit, name) {
		return true
	}
	for _, r := range p.units {
		if r.applies(unit) && matchAny(pick(r), unit, name) {
			return true
		}
	}
	return false
}

func unitSANs(r unitRule) []*pattern   { return r.sans }
func unitShared(r unitRule) []*pattern { return r.shared }

// sansMatch: policy.sans, or a policy.units rule's sans, allows unit name.
func (p *Policy) sansMatch(unit, name string) bool {
	return p.ruleMatch(unit, name, p.sans, unitSANs)
}

// sharedMatch: policy.shared_sans, or a policy.units rule's, allows unit name.
func (p *Policy) sharedMatch(unit, name string) bool {
	return p.ruleMatch(unit, name, p.shared, unitShared)
}

// unitRuleMatch is whether a policy.units pattern for unit (sans or shared_sans)
// matches name.
func (p *Policy) unitRuleMatch(unit, name string) bool {
	return p.ruleMatch(unit, name, nil, unitSANs) || p.ruleMatch(unit, name, nil, unitShared)
}

// profileFor checks profile against every policy.units rule for unit that lists
// profiles: "" when allowed, else the reason.
func (p *Policy) profileFor(unit, profile string) string {
	for i, r := range p.units {
		if r.applies(unit) && len(r.profiles) > 0 && !slices.Contains(r.profiles, profile) {
			return fmt.Sprintf("profile %q is not allowed to %s by policy.units[%d] (%s: %s)", profile, unit, i, r.match, strings.Join(r.profiles, ", "))
		}
	}
	return ""
}

// AllowsProfile reports whether policy.units lets unit ask for profile (for config
// validation: a kind's profile the leader would refuse).
func (p *Policy) AllowsProfile(unit, profile string) bool { return p.profileFor(unit, profile) == "" }
