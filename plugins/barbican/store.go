package barbican

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/keymanager/v1/secrets"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tlsrelay/tlsrelay/plugins/internal/secretparse"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// StoreSecret implements sdk.Backend, in the configured store_format: one PKCS#12
// secret (Octavia's default), or one Barbican secret per part and a certificate
// container over them. When the container cannot be made, the secrets already stored
// are deleted again, so a failed store leaves nothing behind.
func (b *Backend) StoreSecret(ctx context.Context, name string, s sdk.Secret) (string, error) {
	if len(s.CertificatePEM) == 0 {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, name, "a certificate secret needs a certificate")
	}
	var checked sdk.Secret
	if len(s.Key) > 0 {
		var err error
		if checked, err = secretparse.Assemble(name, s.CertificatePEM, s.Key, s.IntermediatesPEM, s.Passphrase); err != nil {
			return "", err
		}
	}
	settings, client, err := b.session(ctx)
	if err != nil {
		return "", err
	}
	f := fetcher{client: client, settings: settings, ref: name}
	if settings.storeFormat == StorePKCS12 {
		return f.storePKCS12(ctx, name, checked)
	}
	parts := []struct {
		name, secretType string
		payload          []byte
	}{
		{refCertificate, "certificate", s.CertificatePEM},
		{refPrivateKey, "private", s.Key},
		{refIntermediates, "certificate", s.IntermediatesPEM},
		{refPassphrase, "passphrase", s.Passphrase},
	}
	var refs []containers.SecretRef
	for _, p := range parts {
		if len(p.payload) == 0 {
			continue
		}
		ref, err := f.createSecret(ctx, name+"/"+p.name, p.secretType, p.payload)
		if err != nil {
			return "", errors.Join(err, f.rollback(ctx, refs))
		}
		refs = append(refs, containers.SecretRef{Name: p.name, SecretRef: ref})
	}
	var container *containers.Container
	err = f.do(ctx, func(ctx context.Context) error {
		var err error
		container, err = containers.Create(ctx, client, containers.CreateOpts{Type: "certificate", Name: name, SecretRefs: refs}).Extract()
		return classify(err, "create container", name)
	})
	if err != nil {
		return "", errors.Join(err, f.rollback(ctx, refs))
	}
	b.log.Info("stored certificate container", "name", name, "ref", container.ContainerRef)
	return container.ContainerRef, nil
}

func (f fetcher) createSecret(ctx context.Context, name, secretType string, payload []byte) (string, error) {
	var ref string
	err := f.do(ctx, func(ctx context.Context) error {
		s, err := secrets.Create(ctx, f.client, secrets.CreateOpts{
			Name: name, SecretType: secrets.SecretType(secretType),
			Payload: string(payload), PayloadContentType: "text/plain",
		}).Extract()
		if err == nil {
			ref = s.SecretRef
		}
		return classify(err, "store secret "+name, f.ref)
	})
	return ref, err
}

// rollback deletes secrets stored before a failure; its own failures are reported too.
func (f fetcher) rollback(ctx context.Context, refs []containers.SecretRef) error {
	var errs []error
	for _, r := range refs {
		if err := f.deleteSecret(ctx, r.SecretRef); err != nil {
			errs = append(errs, fmt.Errorf("rollback of %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// DeleteSecret implements sdk.Backend. For a container, its secrets go too. Something
// already gone is not an error: deleting twice succeeds.
func (b *Backend) DeleteSecret(ctx context.Context, ref string) error {
	kind, id, err := parseRef(ref)
	if err != nil {
		return err
	}
	settings, client, err := b.session(ctx)
	if err != nil {
		return err
	}
	f := fetcher{client: client, settings: settings, ref: ref}
	if kind == kindSecret {
		return f.deleteSecret(ctx, ref)
	}
	var c *containers.Container
	err = f.do(ctx, func(ctx context.Context) error {
		var err error
		c, err = containers.Get(ctx, client, id).Extract()
		return classify(err, "get container", ref)
	})
	if sdk.IsCode(err, sdk.CodeNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.do(ctx, func(ctx context.Context) error {
		return classify(containers.Delete(ctx, client, id).ExtractErr(), "delete container", ref)
	})
	if err != nil && !sdk.IsCode(err, sdk.CodeNotFound) {
		return err
	}
	var errs []error
	for _, r := range c.SecretRefs {
		if err := f.deleteSecret(ctx, r.SecretRef); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f fetcher) deleteSecret(ctx context.Context, secretRef string) error {
	_, id, err := parseRef(secretRef)
	if err != nil {
		return err
	}
	err = f.do(ctx, func(ctx context.Context) error {
		return classify(secrets.Delete(ctx, f.client, id).ExtractErr(), "delete secret "+secretRef, f.ref)
	})
	if sdk.IsCode(err, sdk.CodeNotFound) {
		return nil
	}
	return err
}

// storePKCS12 stores the certificate, its (decrypted) key and its chain as one binary
// PKCS#12 secret without a password, as Octavia's certificate manager stores a
// listener's certificate and reads it back.
func (f fetcher) storePKCS12(ctx context.Context, name string, s sdk.Secret) (string, error) {
	if len(s.Key) == 0 {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, name, "a PKCS#12 secret needs the private key")
	}
	certs, err := certutil.ParseCertificates(s.CertificatePEM)
	if err != nil {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, name, "certificate: %v", err)
	}
	key, err := certutil.ParsePrivateKeyPEM(s.Key)
	if err != nil {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, name, "private key: %v", err)
	}
	var chain []*x509.Certificate
	if len(s.IntermediatesPEM) > 0 {
		if chain, err = certutil.ParseCertificates(s.IntermediatesPEM); err != nil {
			return "", sdk.Errorf(sdk.CodeInvalidArgument, name, "intermediates: %v", err)
		}
	}
	der, err := pkcs12.Passwordless.Encode(key, certs[0], chain, "")
	if err != nil {
		return "", sdk.Errorf(sdk.CodeInvalidArgument, name, "encode PKCS#12: %v", err)
	}
	var ref string
	err = f.do(ctx, func(ctx context.Context) error {
		created, err := secrets.Create(ctx, f.client, secrets.CreateOpts{
			Name: name, SecretType: secrets.OpaqueSecret,
			Payload: base64.StdEncoding.EncodeToString(der), PayloadContentType: "application/octet-stream",
			PayloadContentEncoding: "base64",
		}).Extract()
		if err == nil {
			ref = created.SecretRef
		}
		return classify(err, "store PKCS#12 secret "+name, name)
	})
	return ref, err
}
