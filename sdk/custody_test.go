package sdk

import (
	"context"
	"testing"
	"time"
)

func TestCustodyFromCapabilities(t *testing.T) {
	tests := []struct {
		caps []Capability
		want Custody
	}{
		{nil, CustodyLocal},
		{[]Capability{CapCA, CapSignCSR, CapCAExport}, CustodyLocal},
		{[]Capability{CapCAExport, CapCAImport}, CustodyExportable},
		{[]Capability{CapCAShared, CapCAGenerate}, CustodyShared},
		{[]Capability{CapCAExport, CapCAImport, CapCARemote}, CustodyRemote},
		{[]Capability{CapCAShared, CapCARemote}, CustodyRemote},
	}
	for _, tt := range tests {
		if got := (Info{Capabilities: tt.caps}).Custody(); got != tt.want {
			t.Errorf("Custody of %v = %s, want %s", tt.caps, got, tt.want)
		}
	}
}

// generator makes a "CA" named by the request, and records the validity Configure got.
type generator struct {
	Unimplemented
	configured *time.Duration
}

func (generator) Info(context.Context) (Info, error) { return Info{Name: "gen"}, nil }
func (g generator) Configure(_ context.Context, req ConfigureRequest) error {
	*g.configured = req.Validity
	return nil
}
func (generator) GenerateCA(_ context.Context, req GenerateCARequest) (CA, error) {
	return CA{BundlePEM: []byte(req.CommonName + "|" + req.Validity.String())}, nil
}

// GenerateCA and the group's validity cross the wire; a backend that is no
// CAGenerator answers Unimplemented, here and over the wire.
func TestGenerateCAAndValidityCrossTheWire(t *testing.T) {
	ctx := context.Background()
	var configured time.Duration
	b := dispense(t, generator{configured: &configured})
	if err := b.Configure(ctx, ConfigureRequest{Validity: 48 * time.Hour}); err != nil || configured != 48*time.Hour {
		t.Fatalf("Configure: %v; the backend got validity %s, want 48h", err, configured)
	}
	ca, err := GenerateCA(ctx, b, GenerateCARequest{CommonName: "next CA", Validity: 720 * time.Hour})
	if err != nil || string(ca.BundlePEM) != "next CA|720h0m0s" {
		t.Fatalf("GenerateCA = %q, %v", ca.BundlePEM, err)
	}
	for name, backend := range map[string]Backend{"in process": failing{}, "over the wire": dispense(t, failing{})} {
		if _, err := GenerateCA(ctx, backend, GenerateCARequest{}); !IsCode(err, CodeUnimplemented) {
			t.Errorf("%s: GenerateCA of a backend without it: %v, want unimplemented", name, err)
		}
	}
}
