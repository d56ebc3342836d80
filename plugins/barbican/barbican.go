// Package barbican is the tlsrelay secrets backend for OpenStack Barbican (key-manager
// v1, through gophercloud): it fetches certificate containers and single secrets (a PEM
// bundle or PKCS#12), decrypts an encrypted private key with the container's passphrase,
// refuses a key that does not match its certificate, and stores and deletes certificate
// containers. Every error says which reference, and which secret in it, failed, and
// tells not-found, forbidden, unavailable and malformed apart.
package barbican

import (
	"context"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// Name is the backend's name in configuration.
const Name = "barbican"

// Version is reported by Info: the build of tlsrelay that serves it (builtin.SetVersion),
// "dev" in a binary that does not say.
var Version = "dev"

// Backend implements the secrets part of sdk.Backend with Barbican.
type Backend struct {
	sdk.Unimplemented
	log hclog.Logger

	mu       sync.Mutex
	settings *settings
	client   *gophercloud.ServiceClient // made, and authenticated, on first use
}

// New returns an unconfigured backend that logs to log (nil: nowhere).
func New(log hclog.Logger) *Backend {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Backend{log: log}
}

var _ sdk.Backend = (*Backend)(nil)

// Info implements sdk.Backend.
func (b *Backend) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: Name, Version: Version,
		Capabilities: []sdk.Capability{sdk.CapFetchSecret, sdk.CapStoreSecret, sdk.CapDeleteSecret}}, nil
}

// Configure implements sdk.Backend. It checks the settings; it does not reach Barbican
// or Keystone, so a server that is briefly down does not stop the plugin from starting.
func (b *Backend) Configure(_ context.Context, req sdk.ConfigureRequest) error {
	s, err := parseConfig(req.ConfigJSON)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settings, b.client = &s, nil
	return nil
}

// session returns the settings and a ready client, authenticating on first use.
func (b *Backend) session(ctx context.Context) (settings, *gophercloud.ServiceClient, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.settings == nil {
		return settings{}, nil, sdk.Errorf(sdk.CodeFailedPrecondition, Name, "Configure has not been called")
	}
	if b.client == nil {
		err := retry(ctx, b.settings.retryDeadline, func(ctx context.Context) error {
			c, err := newClient(ctx, *b.settings)
			b.client = c
			return err
		})
		if err != nil {
			return settings{}, nil, err
		}
	}
	return *b.settings, b.client, nil
}
