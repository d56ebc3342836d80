package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
)

// Debian's python: a pyenv shim on PATH lacks python3-octavia.
const octaviaPython = "/usr/bin/python3"

// octavia runs testdata/octavia_harness.py: Octavia's own classes, configured by conf.
func octavia(t *testing.T, conf string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	harness, _ := filepath.Abs("testdata/octavia_harness.py")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, octaviaPython, append([]string{harness, args[0], conf}, args[1:]...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// The Octavia group that configs/octavia-up.yaml describes runs under one `tlsrelay up`
// (controllers lead and are clients; the amphora, named by its amphora ID, only asks,
// serves, and holds that ID: AMPHORA_ID in the environment, another ID, changes
// nothing). Then Octavia's own code uses the units' files as
// they are: its amphora agent (Octavia's Flask app under gunicorn, with Octavia's TLS
// options) serves the REST API with the amphora's bundle.pem and requires client
// certificates from ca.crt, and Octavia's controller client (AmphoraAPIClient, which
// checks the amphora's certificate against its amphora ID) calls it with a controller's
// bundle.pem. Refused: another amphora ID, a client certificate from another group's
// CA, the amphora's own server-only certificate as a client, and no client certificate.
func TestOctaviaAmphoraAgentWithTheGroupsFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	const ampID = "9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50"
	example, err := os.ReadFile("../../configs/octavia-up.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// One amphora, named by its ID.
	ids := "ids: [9f0c2a7e-3b1d-4c5e-8f6a-0b1c2d3e4f50, 0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51]"
	if !strings.Contains(string(example), ids) {
		t.Fatalf("configs/octavia-up.yaml no longer names its amphorae %s", ids)
	}
	config := write("octavia-up.yaml", strings.Replace(string(example), ids, "ids: ["+ampID+"]", 1))
	env := []string{"AMPHORA_ID=0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51"}
	group := filepath.Join(dir, "group")
	r := runWith(t, env, "up", "--config", config, "--dir", group)
	if r.code != 0 || !strings.Contains(r.stderr, "1 amphora: server; 3 controller: client, leader-eligible") {
		t.Fatalf("up of the Octavia group: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	amphora, controller := filepath.Join(group, "amphora-"+ampID), filepath.Join(group, "controller-1")
	if cert := mustReadCert(t, filepath.Join(amphora, "tls.crt")); !slices.Equal(cert.DNSNames, []string{ampID, "amphora-" + ampID}) {
		t.Fatalf("the amphora's certificate names %v, want its amphora ID and its unit's name alone", cert.DNSNames)
	}
	// Another group, another CA: its controller is a stranger to this amphora.
	other := filepath.Join(dir, "other")
	if r := runWith(t, env, "up", "--config", config, "--dir", other); r.code != 0 {
		t.Fatalf("up of another group: exit %d\n%s", r.code, r.stderr)
	}

	addr := freeLocalAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	conf := func(name, clientDir string) string {
		return write(name, fmt.Sprintf(`[haproxy_amphora]
bind_host = 127.0.0.1
bind_port = %s
client_cert = %s/bundle.pem
server_ca = %s/ca.crt
connection_max_retries = 1
connection_retry_interval = 0
[amphora_agent]
agent_server_cert = %s/bundle.pem
agent_server_ca = %s/ca.crt
`, port, clientDir, controller, amphora, amphora))
	}
	startOctaviaAgent(t, conf("agent.conf", controller), dir)
	awaitListening(t, addr)

	out, stderr, err := octavia(t, conf("controller.conf", controller), "client", ampID, "127.0.0.1")
	var answer struct {
		Version struct {
			APIVersion string `json:"api_version"`
		} `json:"version"`
	}
	if err != nil || json.Unmarshal([]byte(out), &answer) != nil || answer.Version.APIVersion == "" {
		t.Fatalf("Octavia's controller client to the amphora agent: %v\n%s%s", err, out, stderr)
	}

	refusals := []struct {
		name, conf, ampID, want string
	}{
		{"another amphora ID", conf("controller.conf", controller), "0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51", "hostname '0b1c2d3e-4f50-4c5e-8f6a-0b1c2d3e4f51' doesn't match"},
		{"a controller of another group", conf("stranger.conf", filepath.Join(other, "controller-0")), ampID, "alert unknown ca"},
		{"the amphora's server-only certificate as a client", conf("amphora-as-client.conf", amphora), ampID, "alert unsupported certificate"},
	}
	for _, tt := range refusals {
		out, stderr, err := octavia(t, tt.conf, "client", tt.ampID, "127.0.0.1")
		if err == nil || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: accepted, or refused for another reason (want %q): %v\n%s%s", tt.name, tt.want, err, out, stderr)
		}
	}
	conn, err := tls.Dial("tcp", addr, goTLS(t, controller, ampID))
	if err == nil {
		_, err = conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err != nil {
		t.Fatalf("a Go client with the controller's files: %v", err)
	}
	noCert := goTLS(t, controller, ampID)
	noCert.Certificates = nil
	conn, err = tls.Dial("tcp", addr, noCert)
	if err == nil {
		conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("the amphora agent answered a client without a certificate")
	}
}

// startOctaviaAgent runs Octavia's amphora agent until the test ends, stopped with its
// process group (gunicorn's arbiter and worker) by its pid.
func startOctaviaAgent(t *testing.T, conf, dir string) {
	t.Helper()
	harness, _ := filepath.Abs("testdata/octavia_harness.py")
	logPath := filepath.Join(dir, "amphora-agent.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(octaviaPython, harness, "agent", conf)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("Octavia's amphora agent: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("the amphora agent's output:\n%s", b)
		}
	})
}

// Octavia's Barbican cert manager (through a real Keystone and Barbican) reads the
// PKCS#12 secret `tlsrelay store` writes, through its PKCS#12 path, not its legacy
// one: the same certificate, key and intermediates. And `tlsrelay fetch` reads what
// Octavia's store_cert writes.
func TestOctaviaCertManagerAndTlsrelayShareSecrets(t *testing.T) {
	t.Parallel()
	ks := testservers.StartKeystone(t)
	m := testservers.NewMaterial(t)
	dir := t.TempDir()
	write := fileWriter(t, dir)
	cert, key, inter := write("cert.pem", string(m.Cert)), write("key.pem", string(m.Key)), write("inter.pem", string(m.Inter))
	os.Chmod(key, 0o600)
	config := write("tlsrelay.yaml", fmt.Sprintf(`roles: {secrets: barbican}
plugins:
  barbican:
    config:
      auth: {type: password, auth_url: %q, username: admin, password: %q, project_name: admin, region: RegionOne}
      retry_deadline: 5s
      timeout: 5s
`, ks.AuthURL, ks.AdminPassword))
	octaviaConf := write("octavia.conf", fmt.Sprintf(`[service_auth]
auth_type = password
auth_url = %s
username = admin
password = %s
project_name = admin
user_domain_name = Default
project_domain_name = Default
[certificates]
region_name = RegionOne
endpoint_type = public
`, ks.AuthURL, ks.AdminPassword))

	r := run(t, "store", "listener-1", "--cert", cert, "--key", key, "--chain", inter, "--config", config)
	ref := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.Contains(ref, "/v1/secrets/") {
		t.Fatalf("tlsrelay store: exit %d, ref %q\n%s", r.code, ref, r.stderr)
	}
	out, stderr, err := octavia(t, octaviaConf, "get", ref)
	var got struct {
		Class         string   `json:"class"`
		Certificate   string   `json:"certificate"`
		PrivateKey    string   `json:"private_key"`
		Intermediates []string `json:"intermediates"`
	}
	if err != nil || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("Octavia's cert manager reading %s: %v\n%s", ref, err, stderr)
	}
	if got.Class != "octavia.certificates.common.pkcs12.PKCS12Cert" {
		t.Fatalf("Octavia read the secret as %s, not through its PKCS#12 path", got.Class)
	}
	if strings.TrimSpace(got.Certificate) != strings.TrimSpace(string(m.Cert)) || len(got.Intermediates) != 1 ||
		strings.TrimSpace(got.Intermediates[0]) != strings.TrimSpace(string(m.Inter)) {
		t.Fatalf("Octavia read another certificate or chain than was stored:\n%s", out)
	}
	if _, err := tls.X509KeyPair(m.Cert, []byte(got.PrivateKey)); err != nil {
		t.Fatalf("the key Octavia read is not the certificate's: %v", err)
	}

	stored, stderr, err := octavia(t, octaviaConf, "store", cert, key, inter)
	stored = strings.TrimSpace(stored)
	if err != nil || !strings.Contains(stored, "/v1/secrets/") {
		t.Fatalf("Octavia's store_cert: %v\n%s%s", err, stored, stderr)
	}
	fetched := filepath.Join(dir, "fetched")
	if r := run(t, "fetch", stored, "--config", config, "--out", fetched); r.code != 0 {
		t.Fatalf("tlsrelay fetch of what Octavia stored: exit %d\n%s", r.code, r.stderr)
	}
	if !bytes.Equal(mustRead(t, filepath.Join(fetched, "tls.crt")), m.Cert) || !bytes.Equal(mustRead(t, filepath.Join(fetched, "chain.crt")), m.Inter) {
		t.Fatal("tlsrelay fetched another certificate or chain than Octavia stored")
	}
	if _, err := tls.X509KeyPair(m.Cert, mustRead(t, filepath.Join(fetched, "tls.key"))); err != nil {
		t.Fatalf("the fetched key is not the certificate's: %v", err)
	}
}

// A SAN template that cannot render on the unit's host (an unset variable, a missing
// file) stops the agent at start with exit 2, naming the unit and the SAN, before it
// joins the group.
func TestAgentStopsOnASANItCannotRender(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := fileWriter(t, dir)
	for _, tt := range []struct{ san, want string }{
		{`{{env "TLSRELAY_TEST_NO_SUCH_ID"}}`, `certificate.sans[1] "{{env \"TLSRELAY_TEST_NO_SUCH_ID\"}}": renders empty on this host`},
		{`{{file "` + filepath.Join(dir, "amphora-id") + `"}}`, "amphora-id: no such file or directory"},
	} {
		config := write("tlsrelay.yaml", fmt.Sprintf("relation: {store: memory}\nstate_dir: %s\ncertificate:\n  output: {dir: %s}\n  sans: [localhost, '%s']\npolicy: {shared_sans: [localhost]}\n",
			filepath.Join(dir, "state"), filepath.Join(dir, "out"), tt.san))
		r := run(t, "agent", "--config", config, "--once")
		if r.code != 2 || !strings.Contains(r.stderr, "node/0: ") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: exit %d, want 2 and a message containing %q\n%s", tt.san, r.code, tt.want, r.stderr)
		}
	}
}
