package config

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var builtins = []string{"barbican", "cfssl", "easyrsa", "file", "openssl"}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tlsrelay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadEmbeddedDefault(t *testing.T) {
	cfg, err := Load("", builtins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Unit != "node/0" || cfg.Roles.CSR != "cfssl" || cfg.Roles.Signer != "cfssl" || !cfg.Plugins["cfssl"].Builtin {
		t.Fatalf("default config = %+v", cfg)
	}
	if cfg.Certificate.Validity != 720*time.Hour || cfg.Certificate.Key != (Key{"ecdsa", 256}) {
		t.Fatalf("default certificate = %+v", cfg.Certificate)
	}
}

func TestLoadMergesFileOntoDefault(t *testing.T) {
	path := writeConfig(t, "unit: db/3\ncertificate:\n  key: {algorithm: rsa, size: 3072}\n  profile: server\n")
	cfg, err := Load(path, builtins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Unit != "db/3" || cfg.Certificate.Key != (Key{"rsa", 3072}) || cfg.Certificate.Profile != "server" {
		t.Fatalf("merged config = %+v", cfg)
	}
	if cfg.Certificate.Validity != 720*time.Hour {
		t.Fatalf("a key the file did not set lost its default: validity = %v", cfg.Certificate.Validity)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Setenv("TLSRELAY_CERTIFICATE_KEY_SIZE", "384")
	t.Setenv("TLSRELAY_UNIT", "web/7")
	t.Setenv("TLSRELAY_CERTIFICATE_SANS", "a.example,10.0.0.1")
	t.Setenv("TLSRELAY_POLICY_SHARED_SANS", "*.example,10.0.0.0/8")
	t.Setenv("TLSRELAY_CERTIFICATE_VALIDITY", "48h")
	cfg, err := Load(writeConfig(t, "unit: db/3\n"), builtins)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Unit != "web/7" || cfg.Certificate.Key.Size != 384 || cfg.Certificate.Validity != 48*time.Hour {
		t.Fatalf("env did not override: %+v", cfg)
	}
	if want := []string{"a.example", "10.0.0.1"}; !reflect.DeepEqual(cfg.Certificate.SANs, want) {
		t.Fatalf("sans = %v, want %v", cfg.Certificate.SANs, want)
	}
}

func TestLoadErrorsNameFileAndKey(t *testing.T) {
	exe, _ := os.Executable()
	openPassword := filepath.Join(t.TempDir(), "p12.password")
	if err := os.WriteFile(openPassword, []byte("changeit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"malformed YAML", "certificate:\n  key: [unclosed\n", []string{"tlsrelay.yaml", "malformed YAML", "line"}},
		{"tab-indented YAML", "certificate:\n\tprofile: peer\n", []string{"tlsrelay.yaml", "malformed YAML"}},
		{"unknown top-level key", "certificat: {profile: peer}\n", []string{"tlsrelay.yaml: unknown keys: certificat"}},
		{"unknown nested key", "certificate:\n  keys: {size: 256}\n", []string{"certificate", "unknown keys: keys"}},
		{"wrong type", "certificate:\n  key: {size: big}\n", []string{"tlsrelay.yaml", "certificate.key.size"}},
		{"unknown backend in a role", "roles: {signer: cfsll}\n", []string{"tlsrelay.yaml", "roles.signer", `unknown backend "cfsll"`, "cfssl"}},
		{"unknown built-in", "roles: {csr: vault}\nplugins: {vault: {builtin: true}}\n", []string{"plugins.vault.builtin", `no built-in backend is named "vault"`}},
		{"plugin path that does not exist", "roles: {csr: ext}\nplugins: {ext: {command: /nonexistent/tlsrelay-plugin-ext, sha256: " + strings.Repeat("ab", 32) + "}}\n",
			[]string{"plugins.ext.command", "/nonexistent/tlsrelay-plugin-ext", "no such file"}},
		{"external plugin without checksum", "plugins: {ext: {command: " + exe + "}}\n", []string{"plugins.ext.sha256", "64 hex digits"}},
		{"bad key algorithm", "certificate: {key: {algorithm: dsa}}\n", []string{"certificate.key.algorithm", `"dsa"`}},
		{"small rsa key", "certificate: {key: {algorithm: rsa, size: 1024}}\n", []string{"certificate.key.size", "1024"}},
		{"bad profile", "certificate: {profile: admin}\n", []string{"certificate.profile", `"admin"`}},
		{"bad renew_at", "certificate: {renew_at: 1.5}\n", []string{"certificate.renew_at"}},
		{"bad validity", "certificate: {validity: soon}\n", []string{"certificate.validity"}},
		{"too short a validity", "certificate: {validity: 10s}\n", []string{"certificate.validity", "shorter than the minimum 1m0s"}},
		{"jitter above renew_at", "certificate: {renew_at: 0.5, renew_jitter: 0.5}\n", []string{"certificate.renew_jitter", "below renew_at"}},
		{"an unknown owner", "certificate: {output: {owner: no-such-user-here}}\n", []string{"certificate.output.owner", "no-such-user-here"}},
		{"an unknown group", "certificate: {output: {group: no-such-group-here}}\n", []string{"certificate.output.group", "no-such-group-here"}},
		{"unknown key rotation", "certificate: {key_rotation: sometimes}\n", []string{"certificate.key_rotation", `"sometimes" is not always or never`}},
		{"negative CA lead", "ca: {rotate_before: -1h}\n", []string{"ca.rotate_before", "must not be negative"}},
		{"negative trust timeout", "ca: {rotation_trust_timeout: -1m}\n", []string{"ca.rotation_trust_timeout", "must be positive"}},
		{"a trust phase without end", "ca: {rotation_trust_timeout: 0s}\n", []string{"ca.rotation_trust_timeout", "every rotation ends"}},
		{"a reissue phase without end", "ca: {rotation_reissue_timeout: 0s}\n", []string{"ca.rotation_reissue_timeout", "every rotation ends"}},
		{"negative revocation delay", "ca: {revoke_departed_after: -1m}\n", []string{"ca.revoke_departed_after", "must not be negative"}},
		{"bad template", "certificate: {common_name: '{{.Nope}}'}\n", []string{"certificate.common_name"}},
		{"bad unit", "unit: DB\n", []string{"unit", `"DB"`}},
		{"unsupported store", "relation: {store: zookeeper}\n", []string{"relation.store", `"zookeeper"`}},
		{"a PKCS#12 password others may read", "certificate: {output: {formats: [pkcs12], pkcs12_password_file: " + openPassword + "}}\n",
			[]string{"certificate.output.pkcs12_password_file", openPassword, "has mode 0644"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.yaml), builtins)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/tlsrelay.yaml", builtins)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tlsrelay.yaml") {
		t.Fatalf("err = %v, want one naming the file", err)
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := Load(writeConfig(t, "certificate: {profile: admin, renew_at: 2}\n"), builtins)
	if err == nil || !strings.Contains(err.Error(), "certificate.profile") || !strings.Contains(err.Error(), "certificate.renew_at") {
		t.Fatalf("err = %v, want both problems", err)
	}
}

func TestSANsFor(t *testing.T) {
	c := Certificate{SANs: []string{"hostname", "ip", "localhost", "127.0.0.1", "localhost"}}
	host := Host{Hostname: "box1", IPs: []net.IP{net.ParseIP("10.1.2.3")}}
	got, err := c.SANsFor("db/2", host)
	want := []string{"10.1.2.3", "127.0.0.1", "box1", "db-2", "localhost"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("SANsFor = %v, %v, want %v", got, err, want)
	}
}

// A SAN template takes a value from the unit's host: an environment variable, a file,
// the hostname; one that cannot render stops the unit with the SAN named.
func TestSANTemplatesTakeHostValues(t *testing.T) {
	dir := t.TempDir()
	idFile := filepath.Join(dir, "amphora-id")
	os.WriteFile(idFile, []byte("  9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
	env := map[string]string{"AMPHORA_ID": "0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51", "ADDR": "10.0.0.7", "TWO": "a b",
		"LIST": "a.example,b.example", "PATH_LIKE": "a.example/b", "TAB": "a\tb", "LINE": "a\nb"}
	host := Host{Hostname: "amp1", Getenv: func(k string) string { return env[k] }}
	tests := []struct {
		san, want, err string
	}{
		{`{{env "AMPHORA_ID"}}`, "0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51", ""},
		{`{{file "` + idFile + `"}}`, "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50", ""},
		{`{{.Hostname}}.amphorae.internal`, "amp1.amphorae.internal", ""},
		{`{{.DNSName}}.{{env "ADDR" | printf "%.0s"}}svc`, "amphora-0.svc", ""},
		{`{{env "ADDR"}}`, "10.0.0.7", ""},
		{`{{or (env "UNSET") .DNSName}}`, "amphora-0", ""},
		{`{{env "UNSET"}}`, "", `certificate.sans[0] "{{env \"UNSET\"}}": renders empty`},
		{`{{file "` + filepath.Join(dir, "empty") + `"}}`, "", "renders empty"},
		{`{{file "` + filepath.Join(dir, "missing") + `"}}`, "", "no such file or directory"},
		{`{{env "TWO"}}`, "", `renders "a b", which is not one DNS name`},
		// Each character that would make one SAN read as several, or a path (mutants
		// that dropped one from the check lived).
		{`{{env "LIST"}}`, "", `renders "a.example,b.example", which is not one DNS name`},
		{`{{env "PATH_LIKE"}}`, "", `renders "a.example/b", which is not one DNS name`},
		{`{{env "TAB"}}`, "", `which is not one DNS name`},
		{`{{env "LINE"}}`, "", `which is not one DNS name`},
		{`{{.ID}}`, "0", ""},
		{`{{uuid .ID}}`, "", `"0" is not a UUID: name the unit <application>/<UUID>`},
	}
	for _, tt := range tests {
		t.Run(tt.san, func(t *testing.T) {
			got, err := Certificate{SANs: []string{tt.san}}.SANsFor("amphora/0", host)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("SANsFor = %v, %v, want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !slices.Contains(got, tt.want) {
				t.Fatalf("SANsFor = %v, %v, want %q among them", got, err, tt.want)
			}
		})
	}
}

// A unit named by its ID (amphora/<UUID>) renders that ID with {{.ID}} and {{uuid .ID}}.
func TestSANTemplateOfAUnitNamedByItsID(t *testing.T) {
	const id = "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"
	got, err := Certificate{SANs: []string{`{{uuid .ID}}`}}.SANsFor("amphora/"+id, Host{})
	if err != nil || !slices.Contains(got, id) {
		t.Fatalf("SANsFor = %v, %v, want the unit's ID", got, err)
	}
}

// kinds.<kind>.ids name the units `up` runs: each must make a unit name, once.
func TestKindIDs(t *testing.T) {
	const id = "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"
	cfg, err := Load(writeConfig(t, "kinds:\n  amphora: {ids: ["+id+", 7]}\n"), builtins)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Kinds["amphora"].UnitNames("amphora"); !slices.Equal(got, []string{"amphora/" + id, "amphora/7"}) {
		t.Fatalf("UnitNames = %v", got)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"kinds:\n  amphora: {ids: [" + strings.ToUpper(id) + "]}\n", "kinds.amphora.ids[0]"},
		{"kinds:\n  amphora: {ids: [a1-b-c-d-e]}\n", "not a unit's ID"},
		{"kinds:\n  amphora: {ids: [" + id + ", " + id + "]}\n", "named twice"},
		{"kinds:\n  amphora: {count: 3, ids: [" + id + "]}\n", "kinds.amphora.count"},
	} {
		if _, err := Load(writeConfig(t, tt.yaml), builtins); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error naming %q", tt.yaml, err, tt.want)
		}
	}
}

// kinds give the units of each application their own profile, SANs, formats and
// leader eligibility from one config; units of no kind keep the config's.
func TestKindsApplyPerUnit(t *testing.T) {
	cfg, err := Load(writeConfig(t, `kinds:
  controller: {count: 2, leader_eligible: true, profile: client, formats: [bundle]}
  amphora:
    count: 3
    leader_eligible: false
    profile: server
    sans: ['{{env "AMPHORA_ID"}}']
relation: {leader_eligible: true}
certificate: {sans: [localhost], profile: peer}
policy:
  shared_sans: [localhost]
  units:
    - {match: "amphora/*", sans: ["*-*-*-*-*"], profiles: [server]}
    - {match: "controller/*", profiles: [client]}
`), builtins)
	if err != nil {
		t.Fatal(err)
	}
	amp, ctl, other := cfg.ForUnit("amphora/2"), cfg.ForUnit("controller/0"), cfg.ForUnit("web/0")
	switch {
	case amp.Unit != "amphora/2" || amp.Relation.LeaderEligible || amp.Certificate.Profile != "server" || !reflect.DeepEqual(amp.Certificate.SANs, []string{`{{env "AMPHORA_ID"}}`}):
		t.Fatalf("amphora/2 runs %+v %+v", amp.Relation, amp.Certificate)
	case !ctl.Relation.LeaderEligible || ctl.Certificate.Profile != "client" || !reflect.DeepEqual(ctl.Certificate.Output.Formats, []string{"bundle"}) || !reflect.DeepEqual(ctl.Certificate.SANs, []string{"localhost"}):
		t.Fatalf("controller/0 runs %+v %+v", ctl.Relation, ctl.Certificate)
	case !other.Relation.LeaderEligible || other.Certificate.Profile != "peer":
		t.Fatalf("web/0 runs %+v %+v", other.Relation, other.Certificate)
	case cfg.Certificate.Profile != "peer" || cfg.Unit == "amphora/2":
		t.Fatal("ForUnit changed the config it was called on")
	}
	if got := cfg.KindNames(); !reflect.DeepEqual(got, []string{"amphora", "controller"}) {
		t.Fatalf("KindNames = %v", got)
	}

	bad := []struct{ yaml, want string }{
		{"kinds: {amp_hora: {count: 1}}", "kinds.amp_hora"},
		{"kinds: {amphora: {count: -1}}", "kinds.amphora.count"},
		{"kinds: {amphora: {profile: admin}}", "kinds.amphora.profile"},
		{"kinds: {amphora: {formats: [jks]}}", "kinds.amphora.formats[0]"},
		{"kinds: {amphora: {sans: ['{{env}']}}", "kinds.amphora.sans[0]"},
		{"kinds: {amphora: {sans: [other.example]}}", `kinds.amphora.sans[0]: "other.example" is not allowed`},
		{"kinds: {amphora: {profile: peer}}\npolicy: {units: [{match: 'amphora/*', profiles: [server]}]}", "kinds.amphora.profile: peer is not allowed"},
		{"kinds: {amphora: {colour: red}}", "kinds[amphora]: unknown keys: colour"},
		{"certificate: {sans: ['{{file \"a\"']}", "certificate.sans[0]"},
	}
	for _, tt := range bad {
		if _, err := Load(writeConfig(t, tt.yaml+"\n"), builtins); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Load = %v, want an error containing %q", tt.yaml, err, tt.want)
		}
	}
}

func TestCommonNameFor(t *testing.T) {
	c := Certificate{CommonName: "{{.DNSName}}.svc"}
	if got, err := c.CommonNameFor("db/2"); err != nil || got != "db-2.svc" {
		t.Fatalf("CommonNameFor = %q, %v", got, err)
	}
}

func TestExampleConfigsLoad(t *testing.T) {
	paths, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(paths) < 4 {
		t.Fatalf("example configs: %v %v", paths, err)
	}
	// On a host with a short name and an address in 10.0.0.0/8, every unit of every
	// example (each kind's too) asks only for what its own policy signs.
	host := Host{Hostname: "vm", IPs: []net.IP{net.ParseIP("10.1.2.3")},
		Getenv: func(k string) string {
			return map[string]string{"AMPHORA_ID": "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"}[k]
		}}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			cfg, err := Load(path, []string{"cfssl", "easyrsa", "openssl", "barbican", "file"})
			if err != nil {
				t.Fatal(err)
			}
			pol, err := cfg.SigningPolicy()
			if err != nil {
				t.Fatal(err)
			}
			units := []string{cfg.Unit}
			for _, kind := range cfg.KindNames() {
				k := cfg.Kinds[kind]
				switch names := k.UnitNames(kind); {
				case len(names) > 0:
					units = append(units, names...)
				case strings.Contains(strings.Join(k.SANs, " "), "uuid"): // a kind named by its ID (an amphora)
					units = append(units, kind+"/9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50")
				default:
					units = append(units, kind+"/0")
				}
			}
			for _, unit := range units {
				sans, err := cfg.ForUnit(unit).Certificate.SANsFor(unit, host)
				if err != nil {
					t.Fatalf("%s: %v", unit, err)
				}
				for _, san := range sans {
					if !pol.AllowsSAN(unit, san) {
						t.Errorf("%s asks for %q on a host named vm, which its policy refuses", unit, san)
					}
				}
			}
		})
	}
}

// A value that came from the environment is not blamed on the file.
func TestErrorsNameTheEnvironment(t *testing.T) {
	t.Setenv("TLSRELAY_CERTIFICATE_KEY_ALGORITHM", "rsa")
	t.Setenv("TLSRELAY_CERTIFICATE_KEY_SIZE", "8192")
	_, err := Load("", builtins)
	if err == nil || !strings.Contains(err.Error(), "embedded default config (with TLSRELAY_CERTIFICATE_KEY_ALGORITHM, TLSRELAY_CERTIFICATE_KEY_SIZE from the environment)") ||
		!strings.Contains(err.Error(), "policy.keys") {
		t.Fatalf("Load = %v", err)
	}
}

func TestUseBackend(t *testing.T) {
	cfg, err := Load("", []string{"barbican", "cfssl", "easyrsa", "file", "openssl"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.UseBackend("openssl", []string{"barbican", "cfssl", "easyrsa", "file", "openssl"}); err != nil || cfg.Roles.CSR != "openssl" || cfg.Roles.Signer != "openssl" {
		t.Fatalf("UseBackend(openssl) = %v, roles %+v", err, cfg.Roles)
	}
	err = cfg.UseBackend("vault", []string{"barbican", "cfssl", "easyrsa", "file", "openssl"})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "vault"`) {
		t.Fatalf("UseBackend(vault) = %v", err)
	}
}

func TestSecretsValidation(t *testing.T) {
	ok := "roles: {secrets: barbican}\nsecrets:\n  - {name: l1, ref: 'http://k/v1/containers/1', output: {dir: /tmp/l1}}\n"
	cfg, err := Load(writeConfig(t, ok), []string{"cfssl", "easyrsa", "openssl", "barbican", "file"})
	if err != nil || len(cfg.Secrets) != 1 || cfg.Secrets[0].Output.Dir != "/tmp/l1" || cfg.SecretsRefresh != time.Hour {
		t.Fatalf("Load = %+v, %v", cfg, err)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"secrets:\n  - {name: l1, ref: r, output: {dir: /x}}\n", "roles.secrets"},
		{"roles: {secrets: barbican}\nsecrets:\n  - {ref: r, output: {dir: /x}}\n", "secrets[0].name"},
		{"roles: {secrets: barbican}\nsecrets:\n  - {name: a, output: {dir: /x}}\n", "secrets[0].ref"},
		{"roles: {secrets: barbican}\nsecrets:\n  - {name: a, ref: r}\n", "secrets[0].output"},
		{"roles: {secrets: barbican}\nsecrets:\n  - {name: a, ref: r, output: {dir: /x}}\n  - {name: a, ref: r, output: {dir: /y}}\n", `secrets[1].name: "a" is used`},
		{"roles: {secrets: barbican}\nsecrets:\n  - {name: a, ref: r, output: {dri: /x}}\n", "dri"},
		{"secrets_refresh: 0s\n", "secrets_refresh"},
		{"ca: {ref: 'http://k/v1/containers/1'}\n", "roles.secrets: must name a backend: ca.ref http://k/v1/containers/1"},
		{"relation: {etcd: {username: u, password: p, password_file: /f}}\n", "relation.etcd.password_file: set password or password_file, not both"},
		{"relation: {etcd: {password_file: /f}}\n", "relation.etcd.username: must be set"},
	} {
		_, err := Load(writeConfig(t, tt.yaml), []string{"cfssl", "easyrsa", "openssl", "barbican", "file"})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

func TestPolicyAndNumbersValidated(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		env  map[string]string
		want string
	}{
		{yaml: "certificate: {renew_at: .nan}\n", want: "certificate.renew_at: NaN"},
		{env: map[string]string{"TLSRELAY_CERTIFICATE_RENEW_AT": "NaN"}, want: "certificate.renew_at: NaN"},
		{env: map[string]string{"TLSRELAY_CERTIFICATE_RENEW_AT": "+Inf"}, want: "certificate.renew_at"},
		{yaml: "certificate: {validity: 87600h}\n", want: "certificate.validity: 87600h0m0s is longer than policy.max_validity"},
		{yaml: "policy: {max_validity: 2000000h}\n", want: "policy.max_validity"},
		{yaml: "certificate: {key: {algorithm: rsa, size: 8192}}\n", want: "certificate.key: rsa 8192 is not allowed by policy.keys"},
		{yaml: "certificate: {sans: [localhost]}\n", want: `certificate.sans[0]: "localhost" is not allowed`},
		{yaml: "certificate: {sans: [node-3]}\n", want: `certificate.sans[0]: "node-3" is not allowed`},
		{yaml: "policy: {sans: ['{{.Nope}}']}\n", want: "policy.sans[0]"},
		{yaml: "policy: {keys: {dsa: [1024]}}\n", want: "policy.keys.dsa"},
		{yaml: "policy: {max_csr_bytes: 5}\n", want: "policy.max_csr_bytes"},
	} {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		yaml := tt.yaml
		if yaml == "" {
			yaml = "unit: db/0\n"
		}
		_, err := Load(writeConfig(t, yaml), builtins)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q %v: err = %v, want %q", tt.yaml, tt.env, err, tt.want)
		}
		for k := range tt.env {
			os.Unsetenv(k)
		}
	}
	// Localhost is opt-in, and then it is signed.
	cfg, err := Load(writeConfig(t, "certificate: {sans: [localhost]}\npolicy: {shared_sans: [localhost]}\n"), builtins)
	if err != nil {
		t.Fatalf("localhost opted in: %v", err)
	}
	if _, err := cfg.SigningPolicy(); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownEnvIsWarnedAbout(t *testing.T) {
	t.Setenv("TLSRELAY_CERTIFICATE_VALIDTY", "1h") // a typo
	t.Setenv("TLSRELAY_CERTIFICATE_VALIDITY", "2h")
	t.Setenv("TLSRELAY_CA_SEAL_KEY", "x")
	cfg, err := Load("", builtins)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "TLSRELAY_CERTIFICATE_VALIDTY") {
		t.Fatalf("warnings = %q, want one naming TLSRELAY_CERTIFICATE_VALIDTY", cfg.Warnings)
	}
}

// A relative plugin command is made absolute once, from the working directory, so the
// file checked is the file run (PATH plays no part).
func TestRelativeCommandIsResolvedOnce(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	exe := filepath.Join(dir, "plugin")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(writeConfig(t, "plugins: {ext: {command: plugin, sha256: "+strings.Repeat("ab", 32)+"}}\n"), builtins)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Plugins["ext"].Command; got != exe {
		t.Fatalf("command = %q, want %q", got, exe)
	}
}

// etcd endpoints may be host:port, as etcdctl and the etcd client take them: the scheme
// comes from whether relation.etcd.tls names a file.
func TestEtcdEndpointsAsHostPort(t *testing.T) {
	tests := []struct {
		yaml string
		want []string
		err  string
	}{
		{`{endpoints: ["127.0.0.1:2379", "[::1]:2379", "http://10.0.0.1:2379"]}`, []string{"http://127.0.0.1:2379", "http://[::1]:2379", "http://10.0.0.1:2379"}, ""},
		{`{endpoints: ["etcd-1:2379"], tls: {ca_file: /etc/ca.pem}}`, []string{"https://etcd-1:2379"}, ""},
		{`{endpoints: ["etcd-1"]}`, nil, `relation.etcd.endpoints[0]: "etcd-1" must be host:port or a URL`},
		{`{endpoints: ["etcd-1:http"]}`, nil, `relation.etcd.endpoints[0]`},
	}
	for _, tt := range tests {
		cfg, err := Load(writeConfig(t, "relation: {store: etcd, etcd: "+tt.yaml+"}\n"), builtins)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: Load = %v, want an error containing %q", tt.yaml, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.yaml, err)
		case tt.err == "" && !reflect.DeepEqual(cfg.Relation.Etcd.Endpoints, tt.want):
			t.Errorf("%s: endpoints %v, want %v", tt.yaml, cfg.Relation.Etcd.Endpoints, tt.want)
		}
	}
}

// Root's credentials from the environment over a unit's config (ca rotate with RBAC):
// an env password replaces the file's password_file, and the other way round.
func TestEtcdPasswordFromTheEnvironment(t *testing.T) {
	path := writeConfig(t, "relation: {etcd: {username: tlsrelay/db/db/0, password_file: /etc/tlsrelay/etcd.password}}\n")
	t.Setenv("TLSRELAY_RELATION_ETCD_USERNAME", "root")
	t.Setenv("TLSRELAY_RELATION_ETCD_PASSWORD", "rootpw")
	cfg, err := Load(path, builtins)
	if err != nil {
		t.Fatalf("an env password over a password_file: %v", err)
	}
	if e := cfg.Relation.Etcd; e.Username != "root" || e.Password != "rootpw" || e.PasswordFile != "" {
		t.Fatalf("etcd credentials %q %q %q", e.Username, e.Password, e.PasswordFile)
	}
	os.Unsetenv("TLSRELAY_RELATION_ETCD_PASSWORD")
	path = writeConfig(t, "relation: {etcd: {username: u, password: inline}}\n")
	t.Setenv("TLSRELAY_RELATION_ETCD_PASSWORD_FILE", "/root/etcd-root.password")
	if cfg, err = Load(path, builtins); err != nil || cfg.Relation.Etcd.Password != "" || cfg.Relation.Etcd.PasswordFile != "/root/etcd-root.password" {
		t.Fatalf("an env password_file over a password: %v", err)
	}
	path = writeConfig(t, "relation: {etcd: {username: u, password: inline, password_file: /x}}\n")
	os.Unsetenv("TLSRELAY_RELATION_ETCD_PASSWORD_FILE")
	if _, err := Load(path, builtins); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("both in the file: %v", err)
	}
}
