package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// Kind is one kind of unit in a group of several (`kinds.<application>`): the units of
// that application take these values over the config's. One config then serves every
// host of the group, and `tlsrelay up` runs Count units of each kind.
type Kind struct {
	// Count is how many units of this kind `tlsrelay up` runs (agents ignore it),
	// named <application>/0 on.
	Count int `mapstructure:"count"`
	// IDs, when set, name the units of this kind `tlsrelay up` runs instead:
	// <application>/<ID> each, as a deployment names a unit by an ID it made (an Octavia
	// amphora's UUID, which {{.ID}} then gives the unit's SANs and the policy).
	IDs []string `mapstructure:"ids"`
	// LeaderEligible, when set, replaces relation.leader_eligible.
	LeaderEligible *bool `mapstructure:"leader_eligible"`
	// Profile, when set, replaces certificate.profile.
	Profile string `mapstructure:"profile"`
	// SANs, when set, replace certificate.sans (templates allowed, see SANsFor).
	SANs []string `mapstructure:"sans"`
	// Formats, when set, replace certificate.output.formats.
	Formats []string `mapstructure:"formats"`
}

var applicationName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`) // as in a unit name (policy.IsUnitName)

// ForUnit returns the config as unit runs it: unit set, and the kind of its application,
// if one is configured, applied. The result shares no slice with c that it changes.
func (c *Config) ForUnit(unit string) *Config {
	out := *c
	out.Unit = unit
	app, _, _ := strings.Cut(unit, "/")
	k, ok := c.Kinds[app]
	if !ok {
		return &out
	}
	if k.LeaderEligible != nil {
		out.Relation.LeaderEligible = *k.LeaderEligible
	}
	if k.Profile != "" {
		out.Certificate.Profile = k.Profile
	}
	if k.SANs != nil {
		out.Certificate.SANs = slices.Clone(k.SANs)
	}
	if k.Formats != nil {
		out.Certificate.Output.Formats = slices.Clone(k.Formats)
	}
	return &out
}

// UnitNames are the names of the units of kind app that `tlsrelay up` runs.
func (k Kind) UnitNames(app string) []string {
	if len(k.IDs) > 0 {
		names := make([]string, len(k.IDs))
		for i, id := range k.IDs {
			names[i] = app + "/" + id
		}
		return names
	}
	names := make([]string, k.Count)
	for i := range names {
		names[i] = fmt.Sprintf("%s/%d", app, i)
	}
	return names
}

// KindNames lists the configured kinds in order.
func (c *Config) KindNames() []string {
	return slices.Sorted(maps.Keys(c.Kinds))
}

func (c *Config) validateKinds(p *problems) {
	for _, name := range c.KindNames() {
		k, key := c.Kinds[name], "kinds."+name
		if !applicationName.MatchString(name) {
			p.add(key, "%q is not an application name like amphora (the part of a unit name before '/')", name)
		}
		if k.Count < 0 {
			p.add(key+".count", "%d must not be negative", k.Count)
		}
		if len(k.IDs) > 0 && k.Count != 0 && k.Count != len(k.IDs) {
			p.add(key+".count", "%d, but %s.ids names %d units: give one or the other", k.Count, key, len(k.IDs))
		}
		seen := map[string]bool{}
		for i, id := range k.IDs {
			switch unit := name + "/" + id; {
			case !policy.IsUnitName(unit):
				p.add(fmt.Sprintf("%s.ids[%d]", key, i), "%q is not a unit's ID: a number or a UUID in lower case (%s is not a unit name)", id, unit)
			case seen[id]:
				p.add(fmt.Sprintf("%s.ids[%d]", key, i), "%q is named twice", id)
			}
			seen[id] = true
		}
		if k.Profile != "" && !sdk.Profile(k.Profile).Valid() {
			p.add(key+".profile", "%q is not one of server, client, peer", k.Profile)
		}
		checkFormats(p, key+".formats", k.Formats)
		validateSANs(p, key+".sans", k.SANs)
	}
}

// validateSANs checks that every SAN template parses (it renders only on the unit's host).
func validateSANs(p *problems, key string, sans []string) {
	for i, s := range sans {
		if strings.Contains(s, "{{") {
			if _, err := sanTemplate(s, Host{}); err != nil {
				p.add(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			}
		}
	}
}
