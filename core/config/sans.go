package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"text/template"

	"github.com/tlsrelay/tlsrelay/core/policy"
)

// Host is what SAN keywords and templates resolve to on this machine.
type Host struct {
	Hostname string
	IPs      []net.IP
	// Getenv and ReadFile are the template functions env and file (default: this
	// process's environment and the file system).
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
}

// LocalHost reads this machine's hostname and non-loopback unicast addresses.
func LocalHost() Host {
	h := Host{Getenv: os.Getenv, ReadFile: os.ReadFile}
	h.Hostname, _ = os.Hostname()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipnet, ok := a.(*net.IPNet); ok && !ipnet.IP.IsLoopback() && ipnet.IP.IsGlobalUnicast() {
			h.IPs = append(h.IPs, ipnet.IP)
		}
	}
	return h
}

// SANsFor returns the SANs a unit asks for: its DNS name ("db/0" as "db-0"), then the
// configured SANs with the keywords hostname and ip resolved through host, and
// templates rendered on it (see sanTemplate). The result is sorted and free of
// duplicates, so it compares equal to a certificate's. An error names the SAN at fault.
func (c Certificate) SANsFor(unit string, host Host) ([]string, error) {
	sans := []string{strings.ReplaceAll(unit, "/", "-")}
	for i, s := range c.SANs {
		switch s {
		case "hostname":
			if host.Hostname != "" {
				sans = append(sans, host.Hostname)
			}
		case "ip":
			for _, ip := range host.IPs {
				sans = append(sans, ip.String())
			}
		default:
			rendered, err := renderSAN(s, unit, host)
			if err != nil {
				return nil, fmt.Errorf("certificate.sans[%d] %q: %w", i, s, err)
			}
			if ip := net.ParseIP(rendered); ip != nil {
				rendered = ip.String()
			}
			sans = append(sans, rendered)
		}
	}
	slices.Sort(sans)
	return slices.Compact(sans), nil
}

// A SAN with "{{" is a Go template, so that one config serves hosts that differ (an
// Octavia amphora names its amphora ID): {{.Unit}}, {{.DNSName}}, {{.ID}} (what follows
// the application in the unit's name: "0", or an amphora/<UUID>'s UUID; {{uuid .ID}}
// refuses any other), {{.Hostname}},
// {{.ShortHostname}} (the hostname's first label: "{{.ShortHostname}}.example.internal"
// is the same name on a host named vm and on one named vm.example.internal),
// {{env "NAME"}} (a variable of the agent's environment, "" when unset) and
// {{file "PATH"}} (a file's content, surrounding space trimmed). It must render to one
// DNS name or IP address.
func sanTemplate(source string, host Host) (*template.Template, error) {
	getenv, readFile := host.Getenv, host.ReadFile
	if getenv == nil {
		getenv = os.Getenv
	}
	if readFile == nil {
		readFile = os.ReadFile
	}
	return template.New("san").Option("missingkey=error").Funcs(template.FuncMap{
		"env":  getenv,
		"uuid": uuidOf,
		"file": func(path string) (string, error) {
			b, err := readFile(path)
			if err != nil {
				return "", err
			}
			return strings.TrimSpace(string(b)), nil
		},
	}).Parse(source)
}

// uuidOf is s if it is a UUID ({{uuid .ID}}): a unit named otherwise cannot render it.
func uuidOf(s string) (string, error) {
	if !policy.IsUUID(s) {
		return "", fmt.Errorf("%q is not a UUID: name the unit <application>/<UUID>", s)
	}
	return s, nil
}

func renderSAN(source, unit string, host Host) (string, error) {
	if !strings.Contains(source, "{{") {
		return source, nil
	}
	t, err := sanTemplate(source, host)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	short, _, _ := strings.Cut(host.Hostname, ".")
	data := struct{ Unit, DNSName, ID, Hostname, ShortHostname string }{unit, policy.UnitDNSName(unit), policy.UnitID(unit), host.Hostname, short}
	if err := t.Execute(&b, data); err != nil {
		var execErr template.ExecError
		if errors.As(err, &execErr) {
			return "", execErr.Err
		}
		return "", err
	}
	out := strings.TrimSpace(b.String())
	switch {
	case out == "":
		return "", fmt.Errorf("renders empty on this host (an environment variable unset, or an empty file?)")
	case strings.ContainsAny(out, " \t\n,/"):
		return "", fmt.Errorf("renders %q, which is not one DNS name or IP address", out)
	}
	return out, nil
}
