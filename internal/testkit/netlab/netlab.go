// Package netlab builds a small network of hosts for tests: Linux network namespaces,
// each with one interface on a private subnet, joined to one another by a bridge in a
// namespace of its own, and to nothing else (no route out, no address in the test's own
// namespace). A host is cut off by detaching its port from the bridge, as pulling its
// cable would: its packets go nowhere, and TCP peers see no answer, not a reset. Hosts
// can also lose a share of their packets, or be split into two sides (iptables).
// Everything a lab makes is removed, and every process it starts is killed by its pid,
// when the test ends.
package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Subnet is the hosts' subnet: host i (from 1) is Subnet.i.
const Subnet = "10.231.77"

// Lab is a set of hosts on one switch.
type Lab struct {
	t      testing.TB
	prefix string // of every namespace and interface name, unique to the lab
	Hosts  []Host
	mu     sync.Mutex
	procs  []*exec.Cmd
}

// Host is one network namespace.
type Host struct {
	NS   string // the namespace
	IP   string // its address on the subnet
	port string // its switch port, in the switch's namespace
}

// New makes n hosts on a switch. It fails the test, naming what is missing, when the
// machine cannot make network namespaces (no root, no iproute2, no veth or bridge).
func New(t testing.TB, n int) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netlab: network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("netlab: the ip command (iproute2) is missing: apt-get install iproute2")
	}
	b := make([]byte, 2)
	rand.Read(b)
	l := &Lab{t: t, prefix: "tl" + hex.EncodeToString(b)}
	t.Cleanup(l.remove)
	sw := l.prefix + "sw"
	l.ip("netns", "add", sw)
	l.ip("-n", sw, "link", "add", "br0", "type", "bridge")
	l.ip("-n", sw, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		h := Host{NS: fmt.Sprintf("%sh%d", l.prefix, i), IP: fmt.Sprintf("%s.%d", Subnet, i), port: fmt.Sprintf("%sp%d", l.prefix, i)}
		l.ip("netns", "add", h.NS)
		l.ip("link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", h.port, "netns", sw)
		l.ip("-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
		l.ip("-n", h.NS, "link", "set", "eth0", "up")
		l.ip("-n", h.NS, "link", "set", "lo", "up")
		l.ip("-n", sw, "link", "set", h.port, "master", "br0", "up")
		l.Hosts = append(l.Hosts, h)
	}
	return l
}

// ip runs an iproute2 command, failing the test with its output.
func (l *Lab) ip(args ...string) {
	l.t.Helper()
	l.run("ip", args...)
}

// Cut detaches host i (from 1) from the switch; Heal attaches it again.
func (l *Lab) Cut(i int)  { l.ip("-n", l.prefix+"sw", "link", "set", l.Hosts[i-1].port, "down") }
func (l *Lab) Heal(i int) { l.ip("-n", l.prefix+"sw", "link", "set", l.Hosts[i-1].port, "up") }

// Lose makes host i drop the given fraction of the packets that reach it, at random
// (iptables' statistic match), until Mend.
func (l *Lab) Lose(i int, fraction float64) {
	l.t.Helper()
	l.chain(i, lossChain)
	l.iptables(i, "-A", lossChain, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprint(fraction), "-j", "DROP")
}

// Mend ends what Lose did on host i.
func (l *Lab) Mend(i int) {
	l.t.Helper()
	l.chain(i, lossChain)
	l.iptables(i, "-F", lossChain)
}

// Split partitions the network in two: the hosts of side on one, the others on the
// other. Each host drops what reaches it from the other side, so both sides see the
// other fall silent, as a failed link between two racks would show it; hosts on one
// side still reach each other. Unsplit ends it.
func (l *Lab) Split(side ...int) {
	l.t.Helper()
	for i := range l.Hosts {
		l.chain(i+1, splitChain)
		for j, other := range l.Hosts {
			if slices.Contains(side, i+1) != slices.Contains(side, j+1) {
				l.iptables(i+1, "-A", splitChain, "-s", other.IP, "-j", "DROP")
			}
		}
	}
}

// Unsplit ends what Split did.
func (l *Lab) Unsplit() {
	l.t.Helper()
	for i := range l.Hosts {
		l.chain(i+1, splitChain)
		l.iptables(i+1, "-F", splitChain)
	}
}

// IsolateMember cuts the etcd member on host i from its peers and leaves it to its
// clients: host i drops what reaches it on, or from, the peer port (2380) of every
// other host, and what answers from the client port (2379) of the other members'
// hosts, so that a client on host i reaches only its own member. Clients elsewhere
// still reach it: a member with no leader that still answers, as a firewall rule
// dropping peer traffic (or a peer link down) leaves it. Rejoin ends it.
func (l *Lab) IsolateMember(i int, members ...int) {
	l.t.Helper()
	l.chain(i, isolateChain)
	for j, other := range l.Hosts {
		if j+1 == i {
			continue
		}
		l.iptables(i, "-A", isolateChain, "-s", other.IP, "-p", "tcp", "--dport", "2380", "-j", "DROP")
		l.iptables(i, "-A", isolateChain, "-s", other.IP, "-p", "tcp", "--sport", "2380", "-j", "DROP")
		if slices.Contains(members, j+1) {
			l.iptables(i, "-A", isolateChain, "-s", other.IP, "-p", "tcp", "--sport", "2379", "-j", "DROP")
		}
	}
}

// Rejoin ends what IsolateMember did on host i.
func (l *Lab) Rejoin(i int) {
	l.t.Helper()
	l.chain(i, isolateChain)
	l.iptables(i, "-F", isolateChain)
}

// The chains of host's INPUT that Lose, Split and IsolateMember fill, each emptied on
// its own.
const lossChain, splitChain, isolateChain = "netlab-loss", "netlab-split", "netlab-isolate"

// chain makes host i's INPUT pass through chain, once.
func (l *Lab) chain(i int, chain string) {
	l.t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		l.t.Fatal("netlab: the iptables command is missing: apt-get install iptables")
	}
	if exec.Command("ip", "netns", "exec", l.Hosts[i-1].NS, "iptables", "-C", "INPUT", "-j", chain).Run() == nil {
		return
	}
	l.iptables(i, "-N", chain)
	l.iptables(i, "-A", "INPUT", "-j", chain)
}

func (l *Lab) iptables(i int, args ...string) {
	l.t.Helper()
	l.run("ip", append([]string{"netns", "exec", l.Hosts[i-1].NS, "iptables"}, args...)...)
}

func (l *Lab) run(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Command prepares name with args to run on host i; Start it with l.Start.
func (l *Lab) Command(i int, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.Hosts[i-1].NS, name}, args...)...)
	// Its own process group, so that it and its children are killed together; killed too
	// if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Start starts cmd (from Command); the lab kills it and its children when the test ends.
func (l *Lab) Start(cmd *exec.Cmd) {
	l.t.Helper()
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("netlab: start %v: %v", cmd.Args, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
}

// Kill kills cmd's process group with sig and, for SIGKILL, waits for it.
func (l *Lab) Kill(cmd *exec.Cmd, sig syscall.Signal) {
	syscall.Kill(-cmd.Process.Pid, sig)
	if sig == syscall.SIGKILL {
		cmd.Wait()
	}
}

// remove kills every process the lab started, then deletes its namespaces (which takes
// their interfaces with them).
func (l *Lab) remove() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, cmd := range procs {
		if cmd.ProcessState == nil {
			l.Kill(cmd, syscall.SIGKILL)
		}
	}
	for _, h := range l.Hosts {
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	exec.Command("ip", "netns", "del", l.prefix+"sw").Run()
}
