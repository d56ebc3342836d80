// Command misbehave is a backend plugin that misbehaves on purpose, for the host's fault
// tests. MISBEHAVE (which the host passes only when the plugin's config lists it under
// env) picks how:
//
//	hang-start   never completes the handshake
//	hang-call    SignCSR never returns
//	log-in-call  SignCSR logs at info through a logger made inside the call
//	crash-in-call SignCSR panics
//	old-sdk      serves as a plugin built before the host handed TLS identities did
//	             (go-plugin's AutoMTLS on the plugin's side)
//	fork-stdout  starts a child (sleep) that holds the plugin's stdout and stderr, and
//	             writes its pid to MISBEHAVE_PIDFILE
//	fork-group   starts a child (sleep) in the plugin's process group, and writes its
//	             pid to MISBEHAVE_PIDFILE
//	(otherwise)  behaves; CreateCSR reports the process's circumstances as JSON in
//	             CSRPEM: its stdin, whether it has a controlling terminal, its environment
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// Report is what CreateCSR returns in the report mode.
type Report struct {
	StdinDev, StdinIno uint64
	TTYError           string // opening /dev/tty: fails without a controlling terminal
	Env                []string
	Pid, Pgid, Sid     int
	ConfigJSON         string // as Configure received it
	Validity           string // as Configure received it
}

var configJSON, validity string

type backend struct{ sdk.Unimplemented }

func (backend) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "misbehave", Version: "0.0.1", Capabilities: []sdk.Capability{sdk.CapCreateCSR, sdk.CapSignCSR, sdk.CapCA}}, nil
}

func (backend) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	configJSON, validity = string(req.ConfigJSON), req.Validity.String()
	return nil
}

func (backend) CreateCSR(context.Context, sdk.CSRRequest) (sdk.CSR, error) {
	var st syscall.Stat_t
	syscall.Fstat(0, &st)
	r := Report{StdinDev: uint64(st.Dev), StdinIno: st.Ino, Env: os.Environ(), Pid: os.Getpid(), Pgid: syscall.Getpgrp(), ConfigJSON: configJSON, Validity: validity}
	r.Sid, _ = getsid()
	if f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err != nil {
		r.TTYError = err.Error()
	} else {
		f.Close()
	}
	b, _ := json.Marshal(r)
	return sdk.CSR{CSRPEM: b}, nil
}

func getsid() (int, error) {
	sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(sid), nil
}

func (backend) SignCSR(ctx context.Context, req sdk.SignRequest) (sdk.Certificate, error) {
	switch os.Getenv("MISBEHAVE") {
	case "hang-call":
		select {} // ignores ctx: a plugin stuck in a tool or a lock
	case "log-in-call":
		// A logger made inside a call, long after Serve started.
		sdk.Logger("misbehave").Info("signing inside the plugin", "unit", req.Unit)
		fmt.Fprintln(os.Stderr, "plain text on stderr from inside SignCSR")
	case "crash-in-call":
		panic("misbehave: crashing inside SignCSR for " + req.Unit)
	}
	return sdk.Certificate{}, sdk.Errorf(sdk.CodeUnimplemented, "", "misbehave does not sign")
}

// CA is a throwaway CA made at start, so that a leader gets as far as SignCSR.
func (backend) CA(context.Context) (sdk.CA, error) { return sdk.CA{BundlePEM: caPEM}, nil }

var caPEM = func() []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "misbehave CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}()

func main() {
	switch os.Getenv("MISBEHAVE") {
	case "hang-start":
		select {}
	case "old-sdk":
		os.Unsetenv(sdk.EnvTransportFD)
	case "fork-stdout":
		child := exec.Command("sleep", "300")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		// Its own session: out of reach of a kill of the plugin's group, so only closing
		// the pipes can free the host.
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := child.Start(); err != nil {
			panic(err)
		}
		os.WriteFile(os.Getenv("MISBEHAVE_PIDFILE"), []byte(strconv.Itoa(child.Process.Pid)), 0o600)
	case "fork-group":
		child := exec.Command("sleep", "300") // the plugin's group: a kill of the group reaches it
		if err := child.Start(); err != nil {
			panic(err)
		}
		os.WriteFile(os.Getenv("MISBEHAVE_PIDFILE"), []byte(strconv.Itoa(child.Process.Pid)), 0o600)
	}
	sdk.Serve(backend{})
}
