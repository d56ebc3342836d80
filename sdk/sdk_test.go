package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
)

// failing answers every call with its configured error.
type failing struct {
	Unimplemented
	err error
}

func (f failing) Info(context.Context) (Info, error)                  { return Info{}, f.err }
func (f failing) Configure(context.Context, ConfigureRequest) error   { return f.err }
func (f failing) FetchSecret(context.Context, string) (Secret, error) { return Secret{}, f.err }

// dispense serves impl over a real gRPC connection in this process.
func dispense(t *testing.T, impl Backend) Backend {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: impl}})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(Backend)
}

func TestErrorsCrossTheWire(t *testing.T) {
	for code := CodeInternal; code <= CodeUnimplemented; code++ {
		t.Run(code.String(), func(t *testing.T) {
			want := Errorf(code, "https://kms/v1/secrets/42", "the %s case", code)
			_, err := dispense(t, failing{err: fmt.Errorf("wrapped: %w", want)}).FetchSecret(context.Background(), "x")
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("err = %#v, not an *Error", err)
			}
			if got.Code != code || got.Ref != "https://kms/v1/secrets/42" || got.Msg != fmt.Sprintf("the %s case", code) {
				t.Fatalf("got %#v, want code %s with ref and message intact", got, code)
			}
			if Retryable(err) != (code == CodeUnavailable) {
				t.Fatalf("Retryable = %v for %s", Retryable(err), code)
			}
		})
	}
}

func TestPlainErrorsArriveAsInternal(t *testing.T) {
	_, err := dispense(t, failing{err: errors.New("disk on fire")}).Info(context.Background())
	if CodeOf(err) != CodeInternal || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v (code %s), want internal with the message", err, CodeOf(err))
	}
}

func TestUnimplementedByDefault(t *testing.T) {
	b := dispense(t, failing{})
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["CreateCSR"] = b.CreateCSR(ctx, CSRRequest{})
	_, checks["SignCSR"] = b.SignCSR(ctx, SignRequest{})
	_, checks["CA"] = b.CA(ctx)
	_, checks["StoreSecret"] = b.StoreSecret(ctx, "n", Secret{})
	checks["DeleteSecret"] = b.DeleteSecret(ctx, "r")
	for name, err := range checks {
		if !IsCode(err, CodeUnimplemented) {
			t.Errorf("%s: err = %v, want unimplemented", name, err)
		}
	}
}

func TestRoundTripOfValues(t *testing.T) {
	ctx := context.Background()
	b := dispense(t, echo{})
	info, err := b.Info(ctx)
	if err != nil || info.Name != "echo" || !info.Has(CapFetchSecret) || info.Has(CapSignCSR) {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	s, err := b.FetchSecret(ctx, "ref")
	if err != nil || string(s.CertificatePEM) != "cert:ref" || string(s.Key) != "key" || string(s.Passphrase) != "pw" {
		t.Fatalf("FetchSecret = %+v, %v", s, err)
	}
	cert, err := b.SignCSR(ctx, SignRequest{CSRPEM: []byte("csr"), Profile: ProfileClient, Validity: 90 * 60e9, Unit: "u/1"})
	if err != nil || string(cert.ChainPEM) != "csr|client|1h30m0s|u/1" {
		t.Fatalf("SignCSR = %q, %v", cert.ChainPEM, err)
	}
}

type echo struct{ Unimplemented }

func (echo) Info(context.Context) (Info, error) {
	return Info{Name: "echo", Capabilities: []Capability{CapFetchSecret}}, nil
}
func (echo) Configure(context.Context, ConfigureRequest) error { return nil }
func (echo) FetchSecret(_ context.Context, ref string) (Secret, error) {
	return Secret{CertificatePEM: []byte("cert:" + ref), Key: PrivateKey("key"), Passphrase: PrivateKey("pw")}, nil
}
func (echo) SignCSR(_ context.Context, r SignRequest) (Certificate, error) {
	return Certificate{ChainPEM: []byte(fmt.Sprintf("%s|%s|%s|%s", r.CSRPEM, r.Profile, r.Validity, r.Unit))}, nil
}

func TestPrivateKeyNeverPrints(t *testing.T) {
	key := PrivateKey("-----BEGIN EC PRIVATE KEY-----\nsecret\n")
	s := Secret{Key: key, Passphrase: PrivateKey("hunter2")}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
		out := fmt.Sprintf(format, s) + fmt.Sprintf(format, key)
		if strings.Contains(out, "secret") || strings.Contains(out, "hunter2") ||
			strings.Contains(out, "736563726574") || strings.Contains(strings.ToLower(out), "68756e74657232") {
			t.Errorf("%s leaks key material: %s", format, out)
		}
	}
}

func TestDecodeConfigRejectsUnknownKeys(t *testing.T) {
	var cfg struct {
		Dir string `json:"dir"`
	}
	if err := DecodeConfig([]byte(`{"dir":"/x"}`), &cfg); err != nil || cfg.Dir != "/x" {
		t.Fatalf("DecodeConfig = %v, %+v", err, cfg)
	}
	err := DecodeConfig([]byte(`{"dri":"/x"}`), &cfg)
	if !IsCode(err, CodeInvalidArgument) || !strings.Contains(err.Error(), `"dri"`) {
		t.Fatalf("misspelt key: err = %v, want invalid argument naming it", err)
	}
}
