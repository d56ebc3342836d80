// Package builtin lists the backends compiled into the tlsrelay binary, which serves
// them as `tlsrelay plugin serve NAME`.
package builtin

import (
	"context"
	"slices"
	"sort"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/plugins/barbican"
	"github.com/tlsrelay/tlsrelay/plugins/cfssl"
	"github.com/tlsrelay/tlsrelay/plugins/easyrsa"
	"github.com/tlsrelay/tlsrelay/plugins/file"
	"github.com/tlsrelay/tlsrelay/plugins/openssl"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// Backends maps each built-in name to its constructor.
var Backends = map[string]func(hclog.Logger) sdk.Backend{
	barbican.Name: func(log hclog.Logger) sdk.Backend { return barbican.New(log) },
	cfssl.Name:    func(log hclog.Logger) sdk.Backend { return cfssl.New(log) },
	openssl.Name:  func(log hclog.Logger) sdk.Backend { return openssl.New(log) },
	easyrsa.Name:  func(log hclog.Logger) sdk.Backend { return easyrsa.New(log) },
	file.Name:     func(hclog.Logger) sdk.Backend { return file.New() },
}

// SetVersion makes v the version every built-in backend reports (sdk.Info.Version): the
// build of the tlsrelay binary that serves them, which the plugins themselves cannot
// read (they depend on the sdk alone, as a third party's do).
func SetVersion(v string) {
	barbican.Version, cfssl.Version, openssl.Version, easyrsa.Version, file.Version = v, v, v, v, v
}

// Names lists the built-in backends, sorted.
func Names() []string {
	names := make([]string, 0, len(Backends))
	for name := range Backends {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Signers lists the built-in backends that sign CSRs (the others only keep secrets),
// sorted: what `up --backend` may name.
func Signers() []string {
	var names []string
	for _, name := range Names() {
		info, err := Backends[name](hclog.NewNullLogger()).Info(context.Background())
		if err == nil && info.Has(sdk.CapSignCSR) && info.Has(sdk.CapCreateCSR) {
			names = append(names, name)
		}
	}
	return names
}

// IsSigner reports whether name is a built-in backend that signs.
func IsSigner(name string) bool { return slices.Contains(Signers(), name) }
