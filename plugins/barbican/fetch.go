package barbican

import (
	"context"
	"fmt"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/secrets"

	"github.com/tlsrelay/tlsrelay/plugins/internal/secretparse"
	"github.com/tlsrelay/tlsrelay/sdk"
)

// The names of a certificate container's secrets, as Barbican and Octavia use them.
const (
	refCertificate   = "certificate"
	refPrivateKey    = "private_key"
	refIntermediates = "intermediates"
	refPassphrase    = "private_key_passphrase"
)

// FetchSecret implements sdk.Backend for a certificate container reference or a single
// secret reference (a PEM bundle, or PKCS#12).
func (b *Backend) FetchSecret(ctx context.Context, ref string) (sdk.Secret, error) {
	kind, id, err := parseRef(ref)
	if err != nil {
		return sdk.Secret{}, err
	}
	s, client, err := b.session(ctx)
	if err != nil {
		return sdk.Secret{}, err
	}
	f := fetcher{client: client, settings: s, ref: ref}
	if kind == kindSecret {
		return f.single(ctx, id)
	}
	secret, err := f.container(ctx, id)
	if err == nil && s.consumer != nil {
		err = f.registerConsumer(ctx, id)
	}
	return secret, err
}

// fetcher fetches one reference; every call retries while Barbican is unavailable.
type fetcher struct {
	client   *gophercloud.ServiceClient
	settings settings
	ref      string
}

func (f fetcher) do(ctx context.Context, fn func(context.Context) error) error {
	return retry(ctx, f.settings.retryDeadline, fn)
}

func (f fetcher) container(ctx context.Context, id string) (sdk.Secret, error) {
	var c *containers.Container
	err := f.do(ctx, func(ctx context.Context) error {
		var err error
		c, err = containers.Get(ctx, f.client, id).Extract()
		return classify(err, "get container", f.ref)
	})
	if err != nil {
		return sdk.Secret{}, err
	}
	if c.Type != "certificate" {
		return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, f.ref, "container is of type %q, not certificate", c.Type)
	}
	refs := map[string]string{}
	for _, r := range c.SecretRefs {
		refs[r.Name] = r.SecretRef
	}
	for _, required := range []string{refCertificate, refPrivateKey} {
		if refs[required] == "" {
			return sdk.Secret{}, sdk.Errorf(sdk.CodeInvalidArgument, f.ref, "certificate container has no %s secret", required)
		}
	}
	parts := map[string][]byte{}
	for _, name := range []string{refCertificate, refPrivateKey, refIntermediates, refPassphrase} {
		if refs[name] == "" {
			continue
		}
		accept := "text/plain"
		if name == refIntermediates { // Octavia takes a DER PKCS#7 bundle here, stored as binary
			if accept, err = f.contentType(ctx, name, refs[name]); err != nil {
				return sdk.Secret{}, err
			}
		}
		payload, err := f.payload(ctx, name, refs[name], accept)
		if err != nil {
			return sdk.Secret{}, err
		}
		parts[name] = payload
	}
	return secretparse.Assemble(f.ref, parts[refCertificate], parts[refPrivateKey], parts[refIntermediates], parts[refPassphrase])
}

// payload fetches one secret's payload; errors name the container and which secret.
func (f fetcher) payload(ctx context.Context, name, secretRef, accept string) ([]byte, error) {
	what := fmt.Sprintf("%s secret %s", name, secretRef)
	_, id, err := parseRef(secretRef)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, f.ref, "%s: %v", what, err)
	}
	var payload []byte
	err = f.do(ctx, func(ctx context.Context) error {
		var err error
		payload, err = secrets.GetPayload(ctx, f.client, id, secrets.GetPayloadOpts{PayloadContentType: accept}).Extract()
		return classify(err, "get "+what, f.ref)
	})
	if err == nil && len(payload) == 0 {
		err = sdk.Errorf(sdk.CodeInvalidArgument, f.ref, "%s has an empty payload", what)
	}
	return payload, err
}

// contentType is the content type to ask a secret's payload in: binary for a secret
// Barbican holds as application/octet-stream, else text.
func (f fetcher) contentType(ctx context.Context, name, secretRef string) (string, error) {
	_, id, err := parseRef(secretRef)
	if err != nil {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, f.ref, "%s secret %s: %v", name, secretRef, err)
	}
	var meta *secrets.Secret
	err = f.do(ctx, func(ctx context.Context) error {
		var err error
		meta, err = secrets.Get(ctx, f.client, id).Extract()
		return classify(err, fmt.Sprintf("get %s secret %s", name, secretRef), f.ref)
	})
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(meta.ContentTypes["default"], "application/octet-stream") {
		return "application/octet-stream", nil
	}
	return "text/plain", nil
}

// single fetches one secret: PKCS#12 when Barbican holds it as binary, else a PEM
// bundle with the certificate, its key and any intermediates.
func (f fetcher) single(ctx context.Context, id string) (sdk.Secret, error) {
	var meta *secrets.Secret
	err := f.do(ctx, func(ctx context.Context) error {
		var err error
		meta, err = secrets.Get(ctx, f.client, id).Extract()
		return classify(err, "get secret", f.ref)
	})
	if err != nil {
		return sdk.Secret{}, err
	}
	contentType := meta.ContentTypes["default"]
	if strings.HasPrefix(contentType, "application/octet-stream") || strings.Contains(contentType, "pkcs12") {
		der, err := f.payload(ctx, "secret", f.ref, "application/octet-stream")
		if err != nil {
			return sdk.Secret{}, err
		}
		return secretparse.FromPKCS12(f.ref, der)
	}
	bundle, err := f.payload(ctx, "secret", f.ref, "text/plain")
	if err != nil {
		return sdk.Secret{}, err
	}
	return secretparse.FromPEMBundle(f.ref, bundle)
}

func (f fetcher) registerConsumer(ctx context.Context, id string) error {
	c := f.settings.consumer
	return f.do(ctx, func(ctx context.Context) error {
		_, err := containers.CreateConsumer(ctx, f.client, id, containers.CreateConsumerOpts{Name: c.Name, URL: c.URL}).Extract()
		return classify(err, "register consumer "+c.Name, f.ref)
	})
}
