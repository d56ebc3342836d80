package plugintest

import (
	"fmt"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// checkGenerateCA: the CA GenerateCA makes has the name and lifetime asked, is CA()
// from then on (first in the bundle), signs, and is still the CA after a restart.
func checkGenerateCA(e *env) error {
	_, before, err := caRoots(e)
	if err != nil {
		return err
	}
	const name, life = "plugintest next CA", 400 * 24 * time.Hour
	asked := time.Now()
	ca, err := sdk.GenerateCA(e.ctx, e.backend, sdk.GenerateCARequest{CommonName: name, Validity: life})
	if err != nil {
		return fmt.Errorf("GenerateCA: %w", err)
	}
	certs, err := certutil.ParseCertificates(ca.BundlePEM)
	if err != nil {
		return fmt.Errorf("GenerateCA returned no CA bundle: %w", err)
	}
	next := certs[0]
	var p problems
	if next.Subject.CommonName != name || next.Equal(before) {
		p.addf("GenerateCA returned %q (the CA before: %t), want a new CA named %q", next.Subject.CommonName, next.Equal(before), name)
	}
	if got := next.NotAfter.Sub(asked); got < life-slack-24*time.Hour || got > life+slack+24*time.Hour {
		p.addf("GenerateCA asked for %s gave a CA that expires %s after", life, got.Round(time.Hour))
	}
	for _, when := range []string{"after GenerateCA", "after a restart"} {
		if when == "after a restart" {
			if err := e.restart(); err != nil {
				return fmt.Errorf("restart: %w", err)
			}
		}
		if _, now, err := caRoots(e); err != nil || !now.Equal(next) {
			p.addf("%s CA() is not the generated CA (%v)", when, err)
			continue
		}
		leaf, err := sign(e, sdk.ProfilePeer, 0)
		if err != nil {
			p.addf("%s: %v", when, err)
		} else if err := leaf.CheckSignatureFrom(next); err != nil {
			p.addf("%s a certificate is not signed by the generated CA: %v", when, err)
		}
	}
	return p.err()
}
