package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Stores lists the relation stores this version implements.
var Stores = []string{StoreEmbedded, StoreEtcd, StoreMemory}

// MinValidity is the shortest certificate lifetime a deployment may ask for.
const MinValidity = time.Minute

// Validate checks every key and returns all problems joined.
func (c *Config) Validate(builtins []string) error {
	p := &problems{source: c.Source}
	if !policy.IsUnitName(c.Unit) {
		p.add("unit", "%q is not a unit name like db/0 (lower-case application, '/', number)", c.Unit)
	}
	if c.StateDir == "" {
		p.add("state_dir", "must be set")
	}
	c.Relation.validate(p)
	c.Certificate.validate(p)
	c.validateKinds(p)
	c.validatePolicy(p)
	c.validatePlugins(p, builtins)
	c.validateSecrets(p)
	return p.err()
}

func (r Relation) validate(p *problems) {
	if r.Name == "" || strings.ContainsAny(r.Name, "/ ") {
		p.add("relation.name", "%q must be a non-empty name without '/' or spaces", r.Name)
	}
	if !slices.Contains(Stores, r.Store) {
		p.add("relation.store", "%q is not one of %s", r.Store, strings.Join(Stores, ", "))
	}
	e := r.Etcd
	if r.Store == StoreEtcd && len(e.Endpoints) == 0 {
		p.add("relation.etcd.endpoints", "store etcd needs at least one endpoint, like https://10.0.0.1:2379")
	}
	for i, ep := range e.Endpoints {
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
			p.add(fmt.Sprintf("relation.etcd.endpoints[%d]", i), "%q must be host:port or a URL like https://10.0.0.1:2379", ep)
		}
	}
	if e.QuotaBytes < 1<<20 {
		p.add("relation.etcd.quota_bytes", "%d must be at least 1 MiB (the cluster's --quota-backend-bytes)", e.QuotaBytes)
	}
	if e.LeaseTTL < time.Second {
		p.add("relation.etcd.lease_ttl", "%s must be at least 1s (a unit departs that long after it dies)", e.LeaseTTL)
	}
	if e.Password != "" && e.PasswordFile != "" {
		p.add("relation.etcd.password_file", "set password or password_file, not both")
	}
	if e.PasswordFile != "" && e.Username == "" {
		p.add("relation.etcd.username", "must be set when relation.etcd.password_file is")
	}
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		p.add("relation.etcd.tls", "cert_file and key_file go together")
	}
}

func (c *Config) validateSecrets(p *problems) {
	if c.CA.RevokeDepartedAfter < 0 {
		p.add("ca.revoke_departed_after", "%s must not be negative (0 revokes at once)", c.CA.RevokeDepartedAfter)
	}
	if c.CA.RemoteRecheck <= 0 {
		p.add("ca.remote_recheck", "%s must be positive", c.CA.RemoteRecheck)
	}
	if c.CA.RotationTrustTimeout <= 0 {
		p.add("ca.rotation_trust_timeout", "%s must be positive: every rotation ends, whatever a unit does (default 10m)", c.CA.RotationTrustTimeout)
	}
	if c.CA.RotationReissueTimeout <= 0 {
		p.add("ca.rotation_reissue_timeout", "%s must be positive: every rotation ends, whatever a unit does (default 1h)", c.CA.RotationReissueTimeout)
	}
	if c.CA.RotateBefore < 0 {
		p.add("ca.rotate_before", "%s must not be negative (0 turns automatic rotation off)", c.CA.RotateBefore)
	}
	if f := c.CA.ChainCRLFile; f != "" && !filepath.IsAbs(f) {
		p.add("ca.chain_crl_file", "%q is not an absolute path", f)
	}
	if c.CA.Ref != "" && c.Roles.Secrets == "" {
		p.add("roles.secrets", "must name a backend: ca.ref %s is fetched through it", c.CA.Ref)
	}
	if len(c.Secrets) > 0 && c.Roles.Secrets == "" {
		p.add("roles.secrets", "must name a backend: %d secrets are configured", len(c.Secrets))
	}
	if c.PluginIdle < 0 || c.PluginIdle > 0 && c.PluginIdle < time.Second {
		p.add("plugin_idle", "%s must be 0 (keep plugins running) or at least 1s", c.PluginIdle)
	}
	if c.Audit.MaxBytes < 4096 {
		p.add("audit.max_bytes", "%d must be at least 4096", c.Audit.MaxBytes)
	}
	if c.Audit.Keep < 1 || c.Audit.Keep > 1000 {
		p.add("audit.keep", "%d must be between 1 and 1000", c.Audit.Keep)
	}
	if c.SecretsRefresh <= 0 {
		p.add("secrets_refresh", "%s must be a positive duration like 1h", c.SecretsRefresh)
	}
	seen := map[string]bool{}
	for i, s := range c.Secrets {
		key := fmt.Sprintf("secrets[%d]", i)
		switch {
		case s.Name == "":
			p.add(key+".name", "must be set")
		case seen[s.Name]:
			p.add(key+".name", "%q is used by another secret", s.Name)
		}
		seen[s.Name] = true
		if s.Ref == "" {
			p.add(key+".ref", "must be set")
		}
		o := s.Output
		if o.Dir == "" && o.Cert == "" && o.Key == "" && o.Chain == "" && o.Bundle == "" {
			p.add(key+".output", "set dir, or a path for at least one of cert, key, chain, bundle")
		}
	}
}

func (c Certificate) validate(p *problems) {
	if cn, err := c.CommonNameFor("app/0"); err != nil {
		p.add("certificate.common_name", "%v", errors.Unwrap(err))
	} else if cn == "" {
		p.add("certificate.common_name", "renders empty")
	}
	var keyErr *sdk.Error
	if errors.As(certutil.CheckKeySpec(sdk.KeySpec{Algorithm: c.Key.Algorithm, Size: c.Key.Size}), &keyErr) {
		p.add("certificate."+keyErr.Ref, "%s", keyErr.Msg)
	}
	if !sdk.Profile(c.Profile).Valid() {
		p.add("certificate.profile", "%q is not one of server, client, peer", c.Profile)
	}
	if c.Validity < MinValidity {
		// Renewal and its retries are paced in seconds: shorter makes no sense.
		p.add("certificate.validity", "%s is shorter than the minimum %s (use a duration like 720h)", c.Validity, MinValidity)
	}
	if c.KeyRotation != "always" && c.KeyRotation != "never" {
		p.add("certificate.key_rotation", "%q is not always or never", c.KeyRotation)
	}
	if !(c.RenewAt > 0 && c.RenewAt <= 1) { // written so that NaN fails too
		p.add("certificate.renew_at", "%v must be a fraction of the lifetime, above 0 and at most 1", c.RenewAt)
	} else if !(c.RenewJitter >= 0 && c.RenewJitter < c.RenewAt) {
		p.add("certificate.renew_jitter", "%v must be a fraction of the lifetime, at least 0 and below renew_at (%v)", c.RenewJitter, c.RenewAt)
	}
	if c.Output.Dir == "" {
		p.add("certificate.output.dir", "must be set")
	}
	if m, err := strconv.ParseUint(c.Output.Mode, 8, 32); err != nil || m&^0o666 != 0 || m&0o600 != 0o600 {
		p.add("certificate.output.mode", "%q must be an octal file mode the owner can read and write, like \"0644\" or \"0640\"", c.Output.Mode)
	}
	if _, err := userID(c.Output.Owner); err != nil {
		p.add("certificate.output.owner", "%v", err)
	}
	if _, err := groupID(c.Output.Group); err != nil {
		p.add("certificate.output.group", "%v", err)
	}
	checkFormats(p, "certificate.output.formats", c.Output.Formats)
	if c.Output.Wants(FormatPKCS12) {
		if _, err := c.Output.PKCS12Password(); err != nil {
			p.add("certificate.output.pkcs12_password_file", "%v", strings.TrimPrefix(err.Error(), "certificate.output.pkcs12_password_file: "))
		}
	}
	validateSANs(p, "certificate.sans", c.SANs)
	if c.OnChangeTimeout <= 0 || c.OnChangeTimeout > time.Hour {
		p.add("certificate.on_change_timeout", "%s must be above 0 and at most 1h", c.OnChangeTimeout)
	}
}

// validatePolicy compiles the signing policy and checks that the unit's own request
// passes it: a config whose units the leader would refuse is an error here, not a
// rejection later.
func (c *Config) validatePolicy(p *problems) {
	pol, err := policy.New(c.Rules())
	if err != nil {
		for _, msg := range strings.Split(err.Error(), "; ") {
			key, reason, _ := strings.Cut(msg, ": ")
			p.add(key, "%s", reason)
		}
		return
	}
	if k := c.Certificate.Key; k.Algorithm != "" && !pol.AllowsKey(k.Algorithm, k.Size) {
		p.add("certificate.key", "%s %d is not allowed by policy.keys", k.Algorithm, k.Size)
	}
	if max := c.Policy.MaxValidity; c.Certificate.Validity > max {
		p.add("certificate.validity", "%s is longer than policy.max_validity %s", c.Certificate.Validity, max)
	}
	for i, san := range c.Certificate.SANs {
		if san == "hostname" || san == "ip" || strings.Contains(san, "{{") || !policy.IsUnitName(c.Unit) {
			continue // known only on the unit's host
		}
		if !pol.AllowsSAN(c.Unit, san) {
			p.add(fmt.Sprintf("certificate.sans[%d]", i), "%q is not allowed by policy.sans, policy.shared_sans or policy.units: the leader would refuse it", san)
		}
	}
	// Each kind's units too, as the leader would see the first of them.
	for _, name := range c.KindNames() {
		k, unit := c.Kinds[name], name+"/0"
		if !policy.IsUnitName(unit) {
			continue // reported by validateKinds
		}
		for i, san := range k.SANs {
			if san != "hostname" && san != "ip" && !strings.Contains(san, "{{") && !pol.AllowsSAN(unit, san) {
				p.add(fmt.Sprintf("kinds.%s.sans[%d]", name, i), "%q is not allowed by policy.sans, policy.shared_sans or policy.units: the leader would refuse it", san)
			}
		}
		if profile := c.ForUnit(unit).Certificate.Profile; !pol.AllowsProfile(unit, profile) {
			p.add("kinds."+name+".profile", "%s is not allowed to %s units by policy.units: the leader would refuse them", profile, name)
		}
	}
}

func (c *Config) validatePlugins(p *problems, builtins []string) {
	for _, role := range []Role{RoleCSR, RoleSigner, RoleSecrets} {
		name := c.Roles.Backend(role)
		if name == "" {
			if role != RoleSecrets {
				p.add("roles."+string(role), "must name a backend")
			}
			continue
		}
		if _, ok := c.Plugins[name]; !ok {
			p.add("roles."+string(role), "unknown backend %q (configured under plugins: %s)", name, strings.Join(c.pluginNames(), ", "))
		}
	}
	for _, name := range c.pluginNames() {
		pl, key := c.Plugins[name], "plugins."+name
		switch {
		case pl.Builtin && pl.Command != "":
			p.add(key, "set builtin or command, not both")
		case pl.Builtin && !slices.Contains(builtins, name):
			p.add(key+".builtin", "no built-in backend is named %q (built in: %s)", name, strings.Join(builtins, ", "))
		case !pl.Builtin && pl.Command == "":
			p.add(key, "set builtin: true or a command")
		case !pl.Builtin:
			validateCommand(p, key, pl)
		}
		for i, env := range pl.Env {
			if !envName.MatchString(env) {
				p.add(fmt.Sprintf("%s.env[%d]", key, i), "%q is not an environment variable name", env)
			}
		}
	}
}

func validateCommand(p *problems, key string, pl Plugin) {
	info, err := os.Stat(pl.Command)
	switch {
	case err != nil:
		p.add(key+".command", "%v", err)
	case !info.Mode().IsRegular() || info.Mode()&0o111 == 0:
		p.add(key+".command", "%s is not an executable file", pl.Command)
	}
	if sum, err := hex.DecodeString(pl.SHA256); err != nil || len(sum) != 32 {
		p.add(key+".sha256", "an external plugin needs the SHA-256 of its binary as 64 hex digits (sha256sum %s)", pl.Command)
	}
}

func (c *Config) pluginNames() []string {
	return slices.Sorted(maps.Keys(c.Plugins))
}

func (c Certificate) commonNameTemplate() (*template.Template, error) {
	return template.New("common_name").Option("missingkey=error").Parse(c.CommonName)
}

// CommonNameFor renders the common name template for a unit.
func (c Certificate) CommonNameFor(unit string) (string, error) {
	t, err := c.commonNameTemplate()
	if err != nil {
		return "", fmt.Errorf("certificate.common_name: %w", err)
	}
	var b strings.Builder
	data := struct{ Unit, DNSName, ID string }{unit, policy.UnitDNSName(unit), policy.UnitID(unit)}
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("certificate.common_name: %w", err)
	}
	return b.String(), nil
}

// UseBackend makes one backend serve both the csr and the signer role, as
// `tlsrelay up --backend NAME` asks, and validates the result.
func (c *Config) UseBackend(name string, builtins []string) error {
	c.Roles.CSR, c.Roles.Signer = name, name
	return c.Validate(builtins)
}
