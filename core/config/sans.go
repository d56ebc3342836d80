package config

import (
	"net"
	"os"
	"slices"
	"strings"
)

// Host is what SAN keywords resolve to on this machine.
type Host struct {
	Hostname string
	IPs      []net.IP
}

// LocalHost reads this machine's hostname and non-loopback unicast addresses.
func LocalHost() Host {
	var h Host
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
// configured SANs with the keywords hostname and ip resolved through host. The result is
// sorted and free of duplicates, so it compares equal to a certificate's.
func (c Certificate) SANsFor(unit string, host Host) []string {
	sans := []string{strings.ReplaceAll(unit, "/", "-")}
	for _, s := range c.SANs {
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
			if ip := net.ParseIP(s); ip != nil {
				s = ip.String()
			}
			sans = append(sans, s)
		}
	}
	slices.Sort(sans)
	return slices.Compact(sans)
}
