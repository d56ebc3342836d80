package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/plugins/cfssl"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// BenchmarkSignCSR compares one backend's SignCSR called in this process with the same
// backend as a plugin child process over go-plugin gRPC (AutoMTLS), on the same CA and
// the same CSRs. The ratio of the two is the cost of the process boundary.
//
//	go test -run '^$' -bench SignCSR -benchtime 2000x ./core/backend
func BenchmarkSignCSR(b *testing.B) {
	ctx := context.Background()
	stateDir := b.TempDir()
	inProcess := cfssl.New(nil)
	if err := inProcess.Configure(ctx, sdk.ConfigureRequest{StateDir: filepath.Join(stateDir, "cfssl")}); err != nil {
		b.Fatal(err)
	}
	host, err := New(Options{
		Self:     testbin.Build(b, testbin.Tlsrelay),
		Plugins:  map[string]config.Plugin{"cfssl": {Builtin: true}},
		Roles:    config.Roles{CSR: "cfssl", Signer: "cfssl"},
		StateDir: stateDir,
		Logger:   hclog.NewNullLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	plugin, err := host.For(ctx, config.RoleSigner)
	if err != nil {
		b.Fatal(err)
	}
	csrs := makeCSRs(b, inProcess, 64)
	caIn, _ := inProcess.CA(ctx)
	caOut, _ := plugin.CA(ctx)
	if string(caIn.BundlePEM) != string(caOut.BundlePEM) {
		b.Fatal("in-process and plugin backends do not share the CA")
	}
	for _, bc := range []struct {
		name    string
		backend sdk.Backend
	}{{"in-process", inProcess}, {"plugin", plugin}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				_, err := bc.backend.SignCSR(ctx, sdk.SignRequest{CSRPEM: csrs[i%len(csrs)], Profile: sdk.ProfilePeer, Unit: "bench/0"})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignCSRBackends compares each tool-driving backend through its plugin process
// with the bare tool doing the same signing in a loop, on the same CA: `openssl x509
// -req` with the same extensions, and easy-rsa's import-req + sign-req (easy-rsa signs
// only imported requests). The ratio is what the plugin adds around the tool.
//
//	go test -run '^$' -bench SignCSRBackends -benchtime 3s ./core/backend
func BenchmarkSignCSRBackends(b *testing.B) {
	ctx := context.Background()
	stateDir := b.TempDir()
	csrs := makeCSRs(b, cfssl.New(nil), 64)
	for _, name := range []string{"openssl", "easyrsa"} {
		plugin := pluginFor(b, name, stateDir)
		if _, err := plugin.CA(ctx); err != nil { // create the CA the bare tool uses too
			b.Fatal(err)
		}
		bare := bareSigners[name](b, filepath.Join(stateDir, name))
		b.Run(name+"/bare-tool", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				bare(csrs[i%len(csrs)])
			}
		})
		b.Run(name+"/plugin", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := plugin.SignCSR(ctx, sdk.SignRequest{CSRPEM: csrs[i%len(csrs)], Profile: sdk.ProfilePeer, Unit: "bench/0"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// pluginFor launches a built-in backend as a plugin child process.
func pluginFor(b *testing.B, name, stateDir string) sdk.Backend {
	host, err := New(Options{
		Self:     testbin.Build(b, testbin.Tlsrelay),
		Plugins:  map[string]config.Plugin{name: {Builtin: true}},
		Roles:    config.Roles{CSR: name, Signer: name},
		StateDir: stateDir,
		Logger:   hclog.NewNullLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(host.Close)
	backend, err := host.For(context.Background(), config.RoleSigner)
	if err != nil {
		b.Fatal(err)
	}
	return backend
}

// bareSigners run the tool itself, as an operator's shell loop would.
var bareSigners = map[string]func(b *testing.B, dir string) func(csr []byte){
	"openssl": func(b *testing.B, dir string) func([]byte) {
		ext := filepath.Join(b.TempDir(), "ext.cnf")
		os.WriteFile(ext, []byte("[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"+
			"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:bench-0,IP:127.0.0.1\n"), 0o644)
		return func(csr []byte) {
			cmd := exec.Command("openssl", "x509", "-req", "-CA", filepath.Join(dir, "ca.pem"), "-CAkey", filepath.Join(dir, "ca-key.pem"),
				"-set_serial", fmt.Sprintf("0x%x", time.Now().UnixNano()), "-days", "30", "-sha256", "-extfile", ext, "-extensions", "v3")
			cmd.Stdin = bytes.NewReader(csr)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("openssl x509 -req: %v: %s", err, out)
			}
		}
	},
	"easyrsa": func(b *testing.B, dir string) func([]byte) {
		csrFile := filepath.Join(b.TempDir(), "bench.csr")
		n := 0
		return func(csr []byte) {
			n++
			os.WriteFile(csrFile, csr, 0o644)
			name := fmt.Sprintf("bare-%d-%d", os.Getpid(), n)
			for _, args := range [][]string{{"import-req", csrFile, name}, {"--subject-alt-name=DNS:bench-0,IP:127.0.0.1", "sign-req", "serverClient", name}} {
				cmd := exec.Command("/usr/share/easy-rsa/easyrsa", args...)
				cmd.Env = append(os.Environ(), "EASYRSA_BATCH=1", "EASYRSA_PKI="+filepath.Join(dir, "pki"), "EASYRSA_CERT_EXPIRE=30")
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("easyrsa %v: %v: %s", args, err, out)
				}
			}
		}
	},
}

func makeCSRs(b *testing.B, backend sdk.Backend, n int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	for i := range out {
		csr, err := backend.CreateCSR(context.Background(), sdk.CSRRequest{
			Key: sdk.KeySpec{Algorithm: "ecdsa", Size: 256}, CommonName: fmt.Sprintf("bench/%d", i),
			SANs: []string{fmt.Sprintf("bench-%d", i), "127.0.0.1"},
		})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = csr.CSRPEM
	}
	return out
}

// BenchmarkPluginStart is the cost of one plugin: launch the cfssl plugin process, the
// go-plugin handshake (TLS identities included), Info and Configure, then Close. Besides
// wall time it reports the CPU the child processes used per start (child-cpu-ms/op,
// from RUSAGE_CHILDREN), since that is what a host of many units pays.
//
//	go test -run '^$' -bench PluginStart -benchtime 40x ./core/backend
func BenchmarkPluginStart(b *testing.B) {
	ctx := context.Background()
	self := testbin.Build(b, testbin.Tlsrelay)
	stateDir := b.TempDir()
	var before, after, selfBefore, selfAfter syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &before)
	syscall.Getrusage(syscall.RUSAGE_SELF, &selfBefore)
	for b.Loop() {
		host, err := New(Options{Self: self, Plugins: map[string]config.Plugin{"cfssl": {Builtin: true}},
			Roles: config.Roles{CSR: "cfssl", Signer: "cfssl"}, StateDir: stateDir, Logger: hclog.NewNullLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := host.For(ctx, config.RoleCSR); err != nil {
			b.Fatal(err)
		}
		host.Close()
	}
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &after)
	syscall.Getrusage(syscall.RUSAGE_SELF, &selfAfter)
	b.ReportMetric(cpuMillis(before, after)/float64(b.N), "child-cpu-ms/op")
	b.ReportMetric(cpuMillis(selfBefore, selfAfter)/float64(b.N), "host-cpu-ms/op")
}

func cpuMillis(before, after syscall.Rusage) float64 {
	ns := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	return float64(ns) / 1e6
}

// BenchmarkSigners compares, on the same CA and CSRs, one CSR per op, at concurrency 1,
// 2 and 8: cfssl's signer in this process; the cfssl plugin through SignCSR; the plugin
// through SignCSRs in batches of 64 (the leader's path since issue 11); and, when
// TLSRELAY_BENCH_CFSSL names a cfssl binary (scripts/bench-signers.sh installs v1.6.5),
// `cfssl serve` over HTTP on 127.0.0.1. csr/s is the throughput.
//
//	scripts/bench-signers.sh    (go test -run '^$' -bench Signers -count 5 ./core/backend)
func BenchmarkSigners(b *testing.B) {
	ctx := context.Background()
	stateDir := b.TempDir()
	inProcess := cfssl.New(nil)
	if err := inProcess.Configure(ctx, sdk.ConfigureRequest{StateDir: filepath.Join(stateDir, "cfssl")}); err != nil {
		b.Fatal(err)
	}
	if _, err := inProcess.CA(ctx); err != nil { // made now: cfssl serve reads its files
		b.Fatal(err)
	}
	plugin := pluginFor(b, "cfssl", stateDir)
	csrs := makeCSRs(b, inProcess, 256)
	req := func(i int) sdk.SignRequest {
		return sdk.SignRequest{CSRPEM: csrs[i%len(csrs)], Profile: sdk.ProfilePeer, Unit: "bench/0"}
	}
	one := func(backend sdk.Backend) func(lo, hi int) error {
		return func(lo, hi int) error {
			for i := lo; i < hi; i++ {
				if _, err := backend.SignCSR(ctx, req(i)); err != nil {
					return err
				}
			}
			return nil
		}
	}
	batched := func(lo, hi int) error {
		reqs := make([]sdk.SignRequest, 0, hi-lo)
		for i := lo; i < hi; i++ {
			reqs = append(reqs, req(i))
		}
		results, err := sdk.SignCSRs(ctx, plugin, reqs)
		for _, r := range results {
			err = errors.Join(err, r.Err)
		}
		return err
	}
	signers := []struct {
		name  string
		chunk int
		sign  func(lo, hi int) error
	}{{"in-process", 1, one(inProcess)}, {"plugin", 1, one(plugin)}, {"plugin-batch", 64, batched}}
	if bin := os.Getenv("TLSRELAY_BENCH_CFSSL"); bin != "" {
		signers = append(signers, struct {
			name  string
			chunk int
			sign  func(lo, hi int) error
		}{"cfssl-serve", 1, cfsslServe(b, bin, filepath.Join(stateDir, "cfssl"), csrs)})
	}
	for _, s := range signers {
		for _, c := range []int{1, 2, 8} {
			b.Run(fmt.Sprintf("%s/c%d", s.name, c), func(b *testing.B) {
				start := time.Now()
				if err := concurrently(b.N, c, s.chunk, s.sign); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "csr/s")
			})
		}
	}
}

// concurrently runs sign over [0,n) in chunks of chunk, from c goroutines.
func concurrently(n, c, chunk int, sign func(lo, hi int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, c)
	for g := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n || errs[g] != nil {
					return
				}
				errs[g] = sign(lo, min(lo+chunk, n))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// cfsslServe runs `cfssl serve` on the CA in dir and returns a signer posting to its
// /api/v1/cfssl/sign; the server is stopped (by its pid) when the benchmark ends.
func cfsslServe(b *testing.B, bin, dir string, csrs [][]byte) func(lo, hi int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := filepath.Join(b.TempDir(), "cfssl.json")
	os.WriteFile(cfg, []byte(`{"signing":{"default":{"expiry":"720h","usages":["digital signature","key encipherment","server auth","client auth"]}}}`), 0o600)
	cmd := exec.Command(bin, "serve", "-address", "127.0.0.1", "-port", fmt.Sprint(port),
		"-ca", filepath.Join(dir, "ca.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem"), "-config", cfg, "-loglevel", "5")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/cfssl/sign", port)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	sign := func(i int) error {
		body, _ := json.Marshal(map[string]string{"certificate_request": string(csrs[i%len(csrs)])})
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out struct {
			Success bool `json:"success"`
			Result  struct {
				Certificate string `json:"certificate"`
			} `json:"result"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || !out.Success || out.Result.Certificate == "" {
			return fmt.Errorf("cfssl serve: status %d, success %v: %v", resp.StatusCode, out.Success, err)
		}
		return nil
	}
	for deadline := time.Now().Add(10 * time.Second); sign(0) != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("cfssl serve did not answer on %s: %v", url, sign(0))
		}
	}
	return func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			if err := sign(i); err != nil {
				return err
			}
		}
		return nil
	}
}

// BenchmarkRoundTrip is one empty call to the cfssl plugin (Info): the cost of the
// process boundary alone (gRPC over the unix socket, TLS 1.3), at concurrency 1 and 8.
//
//	go test -run '^$' -bench RoundTrip -count 5 ./core/backend
func BenchmarkRoundTrip(b *testing.B) {
	ctx := context.Background()
	plugin := pluginFor(b, "cfssl", b.TempDir())
	for _, c := range []int{1, 8} {
		b.Run(fmt.Sprintf("c%d", c), func(b *testing.B) {
			err := concurrently(b.N, c, 1, func(lo, hi int) error {
				for range hi - lo {
					if _, err := plugin.Info(ctx); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
