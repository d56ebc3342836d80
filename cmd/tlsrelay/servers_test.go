package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

// The haproxy and nginx snippets the README shows, with DIR the serving unit's
// certificate.output.dir. haproxy reads bundle.pem (formats: [bundle]); both check
// client certificates against ca.crt and ca.crl, which they read again only on reload,
// so the unit's on_change reloads them.
const (
	haproxySnippet = `frontend mtls
  bind %s ssl crt DIR/bundle.pem verify required ca-file DIR/ca.crt crl-file DIR/ca.crl
  http-request return status 200 content-type text/plain string ok`
	nginxSnippet = `server {
  listen %s ssl;
  ssl_certificate DIR/tls.crt;
  ssl_certificate_key DIR/tls.key;
  ssl_client_certificate DIR/ca.crt;
  ssl_crl DIR/ca.crl;
  ssl_verify_client on;
  ssl_verify_depth 4;
  location / { return 200 "ok\n"; }
}`
)

// Real haproxy and nginx (Debian's) serve with a unit's files and require client
// certificates from the group: every unit is accepted; one that departs and is revoked
// is refused once the serving unit's on_change has reloaded them with the new ca.crl,
// the others still accepted; a client without a certificate is refused throughout.
func TestHaproxyAndNginxWithAUnitsFiles(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	serverDir := filepath.Join(work, "web-0-files")
	haAddr, ngAddr := freeLocalAddr(t), freeLocalAddr(t)
	reload := fmt.Sprintf(`if [ "$TLSRELAY_UNIT" = web/0 ] && [ -f %[1]s/haproxy.pid ]; then kill -USR2 $(cat %[1]s/haproxy.pid); kill -HUP $(cat %[1]s/nginx.pid); echo "$TLSRELAY_CHANGED" >> %[1]s/reloads; fi`, work)
	ag, obs, _ := embeddedGroup(t, "servers", 6*time.Second, fmt.Sprintf(`certificate:
  output: {formats: [bundle]}
  on_change: '%s'
ca: {revoke_departed_after: 0s}
`, reload), true)
	units := []string{"web/0", "web/1", "web/2"}
	ag.start("web/0", "TLSRELAY_CERTIFICATE_OUTPUT_DIR="+serverDir)
	ag.start("web/1")
	ag.start("web/2")
	snap := awaitObs(t, obs, "3 units signed", time.Minute, allAvailable(units...))
	awaitFileIn(t, filepath.Join(serverDir, "ca.crl"))
	// The client that departs does not lead (a leader's departure is failover's business).
	kept, gone := "web/1", "web/2"
	if snap.Leader == gone {
		kept, gone = gone, kept
	}

	startServer(t, "haproxy", work, "haproxy.cfg", fmt.Sprintf("global\n  pidfile %s/haproxy.pid\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n%s\n",
		work, strings.ReplaceAll(fmt.Sprintf(haproxySnippet, haAddr), "DIR", serverDir)), "-W", "-db", "-f")
	startServer(t, "nginx", work, "nginx.conf", fmt.Sprintf("daemon off;\npid %[1]s/nginx.pid;\nerror_log %[1]s/nginx.err;\nworker_processes 1;\nevents {}\nhttp {\n  access_log off;\n%[2]s\n}\n",
		work, strings.ReplaceAll(fmt.Sprintf(nginxSnippet, ngAddr), "DIR", serverDir)), "-c")
	for _, addr := range []string{haAddr, ngAddr} {
		awaitListening(t, addr)
	}

	check := func(when string, want map[string]bool) {
		t.Helper()
		for _, addr := range []string{haAddr, ngAddr} {
			for client, ok := range want {
				err := getOK(t, addr, ag.unitDir(client), client)
				if ok && err != nil {
					t.Errorf("%s: %s refused by %s: %v", when, client, serverName(addr, haAddr), err)
				}
				if !ok && err == nil {
					t.Errorf("%s: %s accepted by %s", when, client, serverName(addr, haAddr))
				}
			}
			if err := getOK(t, addr, "", ""); err == nil {
				t.Errorf("%s: a client without a certificate accepted by %s", when, serverName(addr, haAddr))
			}
		}
	}
	check("all joined", map[string]bool{kept: true, gone: true})

	revoked := readSerial(t, filepath.Join(ag.unitDir(gone), "tls.crt"))
	ag.signalAgent(gone, syscall.SIGTERM)
	ag.exitCode(gone, 30*time.Second)
	if r := runBinary(t, ag.bin, "revoke", gone, "--config", ag.config, "--timeout", "30s"); r.code != 0 {
		t.Fatalf("revoke %s: exit %d\n%s", gone, r.code, r.stderr)
	}
	awaitObs(t, obs, gone+" in the CRL", 20*time.Second, func(s relation.Snapshot) bool {
		return slices.Contains(crlSerials(t, s), revoked)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(work, "reloads"))
		if strings.Contains(string(b), "ca.crl") && crlHas(t, filepath.Join(serverDir, "ca.crl"), revoked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web/0's on_change never reloaded the servers for the new ca.crl; reloads: %q", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the reloaded workers take over
	check(gone+" revoked", map[string]bool{kept: true, gone: false})
}

// getOK makes an HTTPS request to addr with the unit's tls.crt and tls.key (none if dir
// is ""), trusting its ca.crt (or the server's, for no client), and wants 200 "ok".
func getOK(t *testing.T, addr, dir, unit string) error {
	t.Helper()
	cfg := &tls.Config{ServerName: protocol.UnitDNSName("web/0"), MinVersion: tls.VersionTLS12}
	caDir := dir
	if dir == "" {
		cfg.InsecureSkipVerify = true // the server refuses us; its certificate is not the question
	} else {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			return err
		}
		caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.crt"))
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		cfg.Certificates, cfg.RootCAs = []tls.Certificate{pair}, roots
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("status %d, body %q", resp.StatusCode, body)
	}
	return nil
}

// startServer writes the config and runs the server in the foreground until the test
// ends, stopped with its process group by its pid.
func startServer(t *testing.T, name, dir, file, config string, args ...string) {
	t.Helper()
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	log, _ := os.Create(filepath.Join(dir, name+".log"))
	cmd := exec.Command(name, append(args, path)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			t.Logf("%s's output:\n%s", name, b)
		}
	})
}

func freeLocalAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func awaitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
	}
}

func awaitFileIn(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
	}
}

func readSerial(t *testing.T, certFile string) string {
	t.Helper()
	return mustReadCert(t, certFile).SerialNumber.Text(16)
}

func crlHas(t *testing.T, file, serial string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, s := range pemCRLSerials(t, string(b)) {
		if s == serial {
			return true
		}
	}
	return false
}

func serverName(addr, haAddr string) string {
	if addr == haAddr {
		return "haproxy"
	}
	return "nginx"
}

// A Java service handshakes both ways with a unit's keystore.p12 and truststore.p12
// (the modern encoding: AES-256-CBC, PBKDF2, a SHA-256 MAC), against another unit's
// PEM files; keytool lists them, and openssl pkcs12 reads them.
func TestJavaWithAUnitsPKCS12(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	pw := write("p12.pw", "changeit-"+fmt.Sprint(time.Now().UnixNano())+"\n")
	os.Chmod(pw, 0o600)
	password := strings.TrimSpace(string(mustRead(t, pw)))
	config := write("tlsrelay.yaml", fmt.Sprintf("certificate:\n  output: {formats: [pkcs12], pkcs12_password_file: %s}\n", pw))
	up := filepath.Join(dir, "up")
	if r := run(t, "up", "--config", config, "--dir", up, "--units", "2"); r.code != 0 {
		t.Fatalf("up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	javaUnit, goUnit := filepath.Join(up, "node-0"), filepath.Join(up, "node-1")
	// Its key entry's alias is the unit's name (the certificate's common name), what a
	// Tomcat or Spring key-alias setting names.
	if out, err := exec.Command("keytool", "-list", "-keystore", filepath.Join(javaUnit, "keystore.p12"), "-storetype", "PKCS12", "-storepass", password).CombinedOutput(); err != nil || !strings.Contains(string(out), "node-0, ") || !strings.Contains(string(out), "PrivateKeyEntry") {
		t.Fatalf("keytool -list keystore.p12: %v; want a PrivateKeyEntry whose alias is node-0\n%s", err, out)
	}
	src, _ := filepath.Abs("testdata/MutualTLS.java")

	// Java serves, a Go client with the other unit's PEM files connects.
	javaServerGreets(t, javaUnit, password, goUnit, "node-0", "hello CN=node-1")

	// A Go server with the other unit's PEM files requires a client certificate; Java
	// connects with its keystore and checks the server's name.
	cfg := goTLS(t, goUnit, "")
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, cfg.RootCAs
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			return
		}
		fmt.Fprintf(c, "hello %s\n", tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
	}()
	out, err := exec.Command("java", src, "client", javaUnit, password, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port), "node-1").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello node-0" {
		t.Fatalf("the Java client: %v\n%s", err, out)
	}
}

// javaServerGreets runs the Java server (testdata/MutualTLS.java) on javaDir's
// keystore.p12 and truststore.p12; a Go client with goDir's PEM files connects, checking
// the server's certificate for serverName, and the server must greet it as want.
func javaServerGreets(t *testing.T, javaDir, password, goDir, serverName, want string) {
	t.Helper()
	src, _ := filepath.Abs("testdata/MutualTLS.java")
	port := freeLocalAddr(t)[len("127.0.0.1:"):]
	server := exec.Command("java", src, "server", javaDir, password, port)
	stdout, _ := server.StdoutPipe()
	server.Stderr = os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { server.Process.Kill(); server.Wait() }()
	line, _ := readLine(stdout, 60*time.Second)
	if line != "listening" {
		t.Fatalf("the Java server did not start: %q", line)
	}
	conn, err := tls.Dial("tcp", "127.0.0.1:"+port, goTLS(t, goDir, serverName))
	if err != nil {
		t.Fatalf("Go client to the Java server: %v", err)
	}
	greeting, _ := readLine(conn, 10*time.Second)
	conn.Close()
	if greeting != want {
		t.Fatalf("the Java server said %q, want %q", greeting, want)
	}
}

// goTLS is a TLS config with a unit's PEM files, trusting its ca.crt, for serverName.
func goTLS(t *testing.T, dir, serverName string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, filepath.Join(dir, "ca.crt")))
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// readLine reads one line from r within d.
func readLine(r io.Reader, d time.Duration) (string, error) {
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var b []byte
		one := make([]byte, 1)
		for {
			n, err := r.Read(one)
			if n == 1 && one[0] != '\n' {
				b = append(b, one[0])
			}
			if err != nil || n == 1 && one[0] == '\n' {
				done <- result{strings.TrimSpace(string(b)), err}
				return
			}
		}
	}()
	select {
	case r := <-done:
		return r.line, r.err
	case <-time.After(d):
		return "", fmt.Errorf("no line within %s", d)
	}
}
