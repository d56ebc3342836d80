package pkcs11_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ThalesGroup/crypto11"

	"github.com/tlsrelay/tlsrelay/internal/testkit/testbin"
	"github.com/tlsrelay/tlsrelay/internal/testkit/testservers"
	"github.com/tlsrelay/tlsrelay/plugins/pkcs11"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/plugintest"
)

// One SoftHSM2 configuration for the whole test process: the library reads
// SOFTHSM2_CONF once, when it is first loaded.
var hsm *testservers.SoftHSM

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		panic(err)
	}
	hsm, err = testservers.NewSoftHSM(dir)
	if err != nil {
		panic(err)
	}
	os.Setenv("SOFTHSM2_CONF", hsm.Conf)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// token makes a fresh token and the backend's config for it.
func token(t *testing.T, extra string) []byte {
	t.Helper()
	label := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	pinFile, err := hsm.InitToken(label, "1234")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Appendf(nil, `{"module": %q, "token_label": %q, "pin_file": %q%s}`, testservers.SoftHSMModule, label, pinFile, extra)
}

func TestConformanceInProcess(t *testing.T) {
	plugintest.Run(t, plugintest.InProcess(func() sdk.Backend { return pkcs11.New() }, token(t, "")), plugintest.Options{})
}

// As the host runs it: a child process with the host's environment, SOFTHSM2_CONF
// declared as the plugin's env: would declare it.
func TestConformanceBinary(t *testing.T) {
	bin := testbin.Build(t, testbin.Pkcs11Plugin)
	plugintest.Run(t, plugintest.CommandEnv([]string{"SOFTHSM2_CONF"}, token(t, `, "shared": true`), bin), plugintest.Options{})
}

// The CA key is generated in the token sensitive and never extractable, and the token
// refuses to give its value.
func TestCAKeyNeverLeavesTheToken(t *testing.T) {
	cfg := token(t, `, "key_label": "ca"`)
	b := pkcs11.New()
	if err := b.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: cfg, StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CA(context.Background()); err != nil {
		t.Fatal(err)
	}
	label := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	pin, _ := os.ReadFile(filepath.Join(filepath.Dir(hsm.Conf), label+".pin"))
	ctx, err := crypto11.Configure(&crypto11.Config{Path: testservers.SoftHSMModule, TokenLabel: label, Pin: strings.TrimSpace(string(pin))})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	key, err := ctx.FindKeyPair([]byte("ca-1"), []byte("ca"))
	if err != nil || key == nil {
		t.Fatalf("the CA key is not in the token: %v", err)
	}
	attrs, err := ctx.GetAttributes(key, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable, crypto11.CkaNeverExtractable})
	if err != nil {
		t.Fatal(err)
	}
	want := map[crypto11.AttributeType]byte{crypto11.CkaSensitive: 1, crypto11.CkaExtractable: 0, crypto11.CkaNeverExtractable: 1}
	for typ, v := range want {
		if a := attrs[typ]; a == nil || len(a.Value) != 1 || a.Value[0] != v {
			t.Errorf("attribute %#x = %v, want %d", uint(typ), a, v)
		}
	}
	if a, err := ctx.GetAttribute(key, crypto11.CkaValue); err == nil && a != nil && len(a.Value) > 0 {
		t.Fatalf("the token gave the private key's value (%d bytes)", len(a.Value))
	}
}

// Bad configs are refused with the key they concern and the right code.
func TestConfigureErrors(t *testing.T) {
	good := token(t, "")
	looseDir := t.TempDir()
	loose := filepath.Join(looseDir, "pin")
	os.WriteFile(loose, []byte("1234"), 0o644)
	wrong := filepath.Join(looseDir, "wrong")
	os.WriteFile(wrong, []byte("9999"), 0o600)
	tests := []struct {
		name string
		edit func(string) string
		code sdk.Code
		key  string
	}{
		{"a PIN file others may read", func(c string) string { return replacePin(c, loose) }, sdk.CodeInvalidArgument, "config.pin_file"},
		{"the wrong PIN", func(c string) string { return replacePin(c, wrong) }, sdk.CodePermissionDenied, "config.pin_file"},
		{"no such token", func(c string) string { return strings.Replace(c, `"token_label": "`, `"token_label": "absent-`, 1) }, sdk.CodeFailedPrecondition, "config.token_label"},
		{"no such library", func(c string) string {
			return strings.Replace(c, testservers.SoftHSMModule, "/nonexistent/libpkcs11.so", 1)
		}, sdk.CodeFailedPrecondition, "config.module"},
		{"a PIN from a variable not passed", func(c string) string {
			return strings.Replace(c, `"pin_file": "`+pinOf(c)+`"`, `"pin_env": "TOKEN_PIN_NOT_SET"`, 1)
		}, sdk.CodeFailedPrecondition, "config.pin_env"},
		{"a misspelt key", func(c string) string { return strings.Replace(c, `"module"`, `"modul"`, 1) }, sdk.CodeInvalidArgument, "modul"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := pkcs11.New()
			defer b.Close()
			err := b.Configure(context.Background(), sdk.ConfigureRequest{ConfigJSON: []byte(tt.edit(string(good))), StateDir: t.TempDir()})
			if !sdk.IsCode(err, tt.code) || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("err = %v, want %s naming %s", err, tt.code, tt.key)
			}
		})
	}
}

func pinOf(cfg string) string {
	_, rest, _ := strings.Cut(cfg, `"pin_file": "`)
	pin, _, _ := strings.Cut(rest, `"`)
	return pin
}

func replacePin(cfg, pinFile string) string { return strings.Replace(cfg, pinOf(cfg), pinFile, 1) }
