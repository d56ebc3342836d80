package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/tlsrelay/tlsrelay/configs"
)

// EnvPrefix is the prefix of environment overrides: TLSRELAY_CERTIFICATE_KEY_SIZE.
const EnvPrefix = "TLSRELAY"

// Load reads the embedded default, then path (if not empty), then the environment, and
// validates the result. builtins are the backend names compiled into the binary.
func Load(path string, builtins []string) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(configs.Default)); err != nil {
		return nil, fmt.Errorf("embedded default config: %w", err)
	}
	source := "embedded default config"
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("config %s: malformed YAML: %s", path, yamlReason(err))
		}
		source = path
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	var cfg Config
	if err := v.Unmarshal(&cfg, strict); err != nil {
		return nil, fmt.Errorf("config %s: %s", source, decodeReason(err))
	}
	cfg.Source = source
	if set := overridingEnv(v, os.Environ()); len(set) > 0 {
		// A value from the environment is not the file's: say where it may come from.
		cfg.Source += " (with " + strings.Join(set, ", ") + " from the environment)"
	}
	cfg.Warnings = unknownEnv(v, os.Environ())
	cfg.absoluteCommands()
	cfg.Relation.Etcd.passwordFromEnv(os.LookupEnv)
	cfg.Relation.Etcd.schemeEndpoints()
	if err := cfg.Validate(builtins); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// absoluteCommands makes relative plugin commands absolute (from the working
// directory), so the file checked and the file run are one, whatever PATH says.
func (c *Config) absoluteCommands() {
	for name, pl := range c.Plugins {
		if pl.Command != "" && !filepath.IsAbs(pl.Command) {
			if abs, err := filepath.Abs(pl.Command); err == nil {
				pl.Command = abs
				c.Plugins[name] = pl
			}
		}
	}
}

// passwordFromEnv lets a password (or its file) from the environment stand in for the
// other one from the file: an operator acting as root over a unit's config sets
// TLSRELAY_RELATION_ETCD_USERNAME and one of them, and is not told "not both".
func (e *Etcd) passwordFromEnv(lookup func(string) (string, bool)) {
	_, pw := lookup(EnvPrefix + "_RELATION_ETCD_PASSWORD")
	_, file := lookup(EnvPrefix + "_RELATION_ETCD_PASSWORD_FILE")
	switch {
	case pw && !file:
		e.PasswordFile = ""
	case file && !pw:
		e.Password = ""
	}
}

// schemeEndpoints gives host:port endpoints, as etcdctl and the etcd client take them,
// the scheme the TLS settings say: https when relation.etcd.tls names a file, else http.
// Anything else is left for Validate to name.
func (e *Etcd) schemeEndpoints() {
	scheme := "http://"
	if e.TLS.CAFile != "" || e.TLS.CertFile != "" {
		scheme = "https://"
	}
	for i, ep := range e.Endpoints {
		if strings.Contains(ep, "://") {
			continue
		}
		if host, port, err := net.SplitHostPort(ep); err == nil && host != "" && port != "" && strings.Trim(port, "0123456789") == "" {
			e.Endpoints[i] = scheme + ep
		}
	}
}

// strict makes an unknown key an error and reads comma-separated lists from env values.
func strict(dc *mapstructure.DecoderConfig) {
	dc.ErrorUnused = true
	dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)
}

// yamlReason trims viper's wrapping from a YAML parse error, keeping the line number.
func yamlReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "yaml: "); i >= 0 {
		return msg[i:]
	}
	return msg
}

// decodeReason rewords mapstructure's errors so that each names the key at fault.
func decodeReason(err error) string {
	var lines []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed due to") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		if before, after, ok := strings.Cut(line, "' has invalid keys: "); ok {
			// mapstructure names the top level by its Go type, nested maps by key.
			switch key := strings.TrimPrefix(before, "'"); key {
			case "", "config.Config":
				line = "unknown keys: " + after
			default:
				line = fmt.Sprintf("%s: unknown keys: %s", key, after)
			}
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return err.Error()
	}
	return strings.Join(lines, "; ")
}

// OtherEnv lists the TLSRELAY_* variables tlsrelay reads that are not config keys.
var OtherEnv = []string{"TLSRELAY_CA_SEAL_KEY", "TLSRELAY_ETCD_ROOT_PASSWORD", "TLSRELAY_LOG_LEVEL", "TLSRELAY_PLUGIN"}

// overridingEnv names the TLSRELAY_* variables of environ that set a key of v.
func overridingEnv(v *viper.Viper, environ []string) []string {
	keys := map[string]bool{}
	for _, key := range v.AllKeys() {
		keys[EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = true
	}
	var set []string
	for _, kv := range environ {
		if name, _, _ := strings.Cut(kv, "="); keys[name] {
			set = append(set, name)
		}
	}
	slices.Sort(set)
	return set
}

// unknownEnv names the TLSRELAY_* variables of environ that override no key of v.
func unknownEnv(v *viper.Viper, environ []string) []string {
	known := map[string]bool{}
	for _, name := range OtherEnv {
		known[name] = true
	}
	for _, key := range v.AllKeys() {
		for {
			known[EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = true
			i := strings.LastIndex(key, ".")
			if i < 0 {
				break
			}
			key = key[:i] // a parent key: TLSRELAY_CERTIFICATE_KEY sets the whole map
		}
	}
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix+"_") && !known[name] && !strings.HasPrefix(name, EnvPrefix+"_PLUGINS_") {
			unknown = append(unknown, fmt.Sprintf("environment variable %s names no config key; it is ignored", name))
		}
	}
	slices.Sort(unknown)
	return unknown
}
