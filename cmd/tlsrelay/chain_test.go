package main

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/testkit/pkitest"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A group whose CA is an intermediate under an enterprise root (root -> int1 -> int2),
// int2 and its key brought by ca.ref with int1 and the root as its intermediates, from a
// real Barbican container and from a file (the file secrets backend): every unit's
// tls.crt is its leaf, int2 and int1, its ca.crt the root alone, so that OpenSSL
// verifies with the root as the only anchor, and haproxy (with bundle.pem) and nginx
// (ssl_verify_depth 4) accept each unit as a client while trusting the root alone and
// checking every CA's CRL (the enterprise's from ca.chain_crl_file, in each unit's ca.crl
// after the group's), and refuse a unit once it is revoked; Python's ssl and GnuTLS's
// clients, with a unit's files, verify haproxy's chain to the root and are accepted; a Java service
// serves with a unit's PKCS#12 stores and greets another unit by name.
func TestAGroupUnderAnIntermediate(t *testing.T) {
	t.Parallel()
	root := pkitest.NewCA(t, "enterprise root", time.Now())
	int1 := root.Intermediate(t, "enterprise issuing 1")
	int2 := int1.Intermediate(t, "group CA")
	pw := filepath.Join(t.TempDir(), "p12.pw")
	if err := os.WriteFile(pw, []byte("chain-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	more := fmt.Sprintf("certificate:\n  output: {formats: [bundle, pkcs12], pkcs12_password_file: %s}\n", pw)
	// The enterprise's CRLs: the root's (over int1) and int1's (over int2), revoking
	// nothing of ours; and one of the group CA itself, which the leader leaves out.
	crls := filepath.Join(t.TempDir(), "enterprise.crl")
	if err := os.WriteFile(crls, []byte(crlOf(t, root)+crlOf(t, int1)+crlOf(t, int2)), 0o644); err != nil {
		t.Fatal(err)
	}
	caMore := fmt.Sprintf(", chain_crl_file: %q, revoke_departed_after: 0s", crls)
	for _, source := range []struct {
		name  string
		group func(t *testing.T) (*agents, relation.Observer)
		java  bool // a Java service too (once: the JVM is slow to start)
	}{
		{"Barbican", func(t *testing.T) (*agents, relation.Observer) {
			ag, obs, _, _ := barbicanGroup(t, "chain", int2, []byte(int1.PEM+root.PEM), caMore, more)
			return ag, obs
		}, false},
		{"file", func(t *testing.T) (*agents, relation.Observer) {
			return fileGroup(t, "chain", int2.PEM+int1.PEM+root.PEM+string(pkitest.KeyPEM(t, int2.Key)), caMore, more)
		}, true},
	} {
		t.Run(source.name, func(t *testing.T) {
			t.Parallel()
			ag, obs := source.group(t)
			checkChainGroup(t, ag, obs, source.java)
		})
	}
}

// crlOf is a CRL of ca's, revoking nothing, valid a day.
func crlOf(t *testing.T, ca pkitest.CA) string {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(24 * time.Hour)}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pkitest.PEM("X509 CRL", der)
}

// fileGroup starts an embedded etcd and agents of relation name whose CA is the PEM
// caFile holds (ca.ref, through the file secrets backend), with caMore in the ca: map
// and more YAML.
func fileGroup(t *testing.T, name, caFile, caMore, more string) (*agents, relation.Observer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "group-ca.pem")
	if err := os.WriteFile(path, []byte(caFile), 0o600); err != nil {
		t.Fatal(err)
	}
	ag, obs, _ := embeddedGroup(t, name, 2*time.Second, fmt.Sprintf("roles: {secrets: file}\nca: {ref: %q%s}\n", path, caMore)+more, false)
	return ag, obs
}

// checkChainGroup starts three units of a group whose CA is int2 under int1 under the
// enterprise root, and checks their files, status, OpenSSL, haproxy and nginx.
func checkChainGroup(t *testing.T, ag *agents, obs relation.Observer, java bool) {
	t.Helper()
	units := []string{"web/0", "web/1", "web/2"}
	for _, u := range units {
		ag.start(u)
	}
	awaitObs(t, obs, "3 units with certificates", time.Minute, allAvailable(units...))

	for _, u := range units {
		dir := ag.unitDir(u)
		var tlsCrt, caCrt string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			tlsCrt, caCrt = commonNames(t, filepath.Join(dir, "tls.crt")), commonNames(t, filepath.Join(dir, "ca.crt"))
			if tlsCrt == protocol.UnitDNSName(u)+", group CA, enterprise issuing 1" && caCrt == "enterprise root" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: tls.crt holds [%s], ca.crt [%s]; want its leaf, the group CA and enterprise issuing 1, and the root alone", u, tlsCrt, caCrt)
			}
		}
		// The README's check, with the root as the only anchor and the chain from tls.crt.
		crt := filepath.Join(dir, "tls.crt")
		if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "ca.crt"), "-untrusted", crt, crt).CombinedOutput(); err != nil {
			t.Errorf("%s: openssl verify: %v\n%s", u, err, out)
		}
	}

	r := runBinary(t, ag.bin, "status", "--config", ag.config)
	if r.code != 0 || !strings.Contains(r.stdout, "1 CAs trusted") || !strings.Contains(r.stdout, "units trust 1 anchor(s) in ca.crt") || strings.Contains(r.stdout, "partial") {
		t.Errorf("status: exit %d; want the group CA trusted under one anchor, its chain whole:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// haproxy and nginx trust the root alone, take each unit's chain, and check the CRL
	// of every CA in it: the group's, then the enterprise's, in the serving unit's ca.crl.
	work := t.TempDir()
	serverDir := ag.unitDir("web/0")
	for deadline := time.Now().Add(20 * time.Second); strings.Count(string(mustRead(t, filepath.Join(serverDir, "ca.crl"))), "BEGIN X509 CRL") != 3; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("web/0's ca.crl holds %d CRLs, want 3 (the group's, the root's, int1's; not a second of the group CA's)",
				strings.Count(string(mustRead(t, filepath.Join(serverDir, "ca.crl"))), "BEGIN X509 CRL"))
		}
	}
	haAddr, ngAddr := freeLocalAddr(t), freeLocalAddr(t)
	startServer(t, "haproxy", work, "haproxy.cfg", fmt.Sprintf("global\n  pidfile %s/haproxy.pid\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n%s\n",
		work, strings.ReplaceAll(fmt.Sprintf(haproxySnippet, haAddr), "DIR", serverDir)), "-W", "-db", "-f")
	startServer(t, "nginx", work, "nginx.conf", fmt.Sprintf("daemon off;\npid %[1]s/nginx.pid;\nerror_log %[1]s/nginx.err;\nworker_processes 1;\nevents {}\nhttp {\n  access_log off;\n%[2]s\n}\n",
		work, strings.ReplaceAll(fmt.Sprintf(nginxSnippet, ngAddr), "DIR", serverDir)), "-c")
	check := func(when string, want map[string]bool) {
		t.Helper()
		for _, addr := range []string{haAddr, ngAddr} {
			awaitListening(t, addr)
			for u, ok := range want {
				if err := getOK(t, addr, ag.unitDir(u), u); ok != (err == nil) {
					t.Errorf("%s: %s accepted %v by %s (%v), want %v", when, u, err == nil, serverName(addr, haAddr), err, ok)
				}
			}
			if err := getOK(t, addr, "", ""); err == nil {
				t.Errorf("%s: a client without a certificate accepted by %s", when, serverName(addr, haAddr))
			}
		}
	}
	check("all joined", map[string]bool{"web/1": true, "web/2": true})
	if java {
		// Java serves with web/1's keystore.p12 (its chain) and truststore.p12 (the root);
		// a Go client with web/2's files, trusting the root alone, is greeted by name.
		javaServerGreets(t, ag.unitDir("web/1"), "chain-secret", ag.unitDir("web/2"), "web-1", "hello CN=web-2")
	}
	// Python's ssl, as Octavia's code is, with the same files: it trusts the root alone,
	// verifies haproxy's chain for web/0's name and sends web/1's.
	py := `import ssl, socket, sys
d, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=d + "/ca.crt")
ctx.load_cert_chain(d + "/tls.crt", d + "/tls.key")
with ctx.wrap_socket(socket.create_connection((host, port), timeout=5), server_hostname="web-0") as s:
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    print(s.recv(4096).decode().split("\r\n")[0])`
	host, port, _ := strings.Cut(haAddr, ":")
	if out, err := exec.Command("python3", "-c", py, ag.unitDir("web/1"), host, port).CombinedOutput(); err != nil || !strings.Contains(string(out), "200") {
		t.Errorf("Python's ssl to haproxy with web/1's files: %v\n%s", err, out)
	}
	// GnuTLS's client likewise.
	d := ag.unitDir("web/1")
	gnutls := exec.Command("gnutls-cli", "--x509cafile", filepath.Join(d, "ca.crt"), "--x509certfile", filepath.Join(d, "tls.crt"),
		"--x509keyfile", filepath.Join(d, "tls.key"), "--verify-hostname", "web-0", "--port", port, host)
	gnutls.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	if out, err := gnutls.CombinedOutput(); err != nil || !strings.Contains(string(out), "The certificate is trusted") || !strings.Contains(string(out), " 200 OK") {
		t.Errorf("GnuTLS's client to haproxy with web/1's files: %v\n%s", err, out)
	}

	// web/2 revoked: once web/0's ca.crl lists it, the servers reloaded refuse it.
	revoked := readSerial(t, filepath.Join(ag.unitDir("web/2"), "tls.crt"))
	ag.signalAgent("web/2", syscall.SIGTERM)
	ag.exitCode("web/2", 30*time.Second)
	if r := runBinary(t, ag.bin, "revoke", "web/2", "--config", ag.config, "--timeout", "30s"); r.code != 0 {
		t.Fatalf("revoke web/2: exit %d\n%s", r.code, r.stderr)
	}
	for deadline := time.Now().Add(30 * time.Second); !crlHas(t, filepath.Join(serverDir, "ca.crl"), revoked); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("web/0's ca.crl never listed web/2's serial %s", revoked)
		}
	}
	for _, pidFile := range []struct {
		name string
		sig  syscall.Signal
	}{{"haproxy.pid", syscall.SIGUSR2}, {"nginx.pid", syscall.SIGHUP}} {
		pid, err := strconv.Atoi(strings.TrimSpace(string(mustRead(t, filepath.Join(work, pidFile.name)))))
		if err != nil {
			t.Fatal(err)
		}
		syscall.Kill(pid, pidFile.sig)
	}
	time.Sleep(time.Second) // the reloaded workers take over
	check("web/2 revoked", map[string]bool{"web/1": true, "web/2": false})
}

// commonNames lists the common names of the certificates in a PEM file, in order.
func commonNames(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	certs, err := certutil.ParseCertificates(b)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return strings.Join(out, ", ")
}
