package plugintest

import (
	"fmt"
	"os"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// checkFixedValidity: a signer declared to sign for one lifetime (Options.FixedValidity)
// signs for it whatever is asked.
func checkFixedValidity(e *env) error {
	var p problems
	for _, asked := range []time.Duration{0, 48 * time.Hour, e.opts.FixedValidity} {
		start := time.Now()
		leaf, err := sign(e, sdk.ProfilePeer, asked)
		if err != nil {
			p = append(p, err)
			continue
		}
		if got := leaf.NotAfter.Sub(start); got < e.opts.FixedValidity-slack || got > e.opts.FixedValidity+slack {
			p.addf("declared to sign for %s, it gave a certificate that expires %s after signing (asked %s)",
				e.opts.FixedValidity, got.Round(time.Second), asked)
		}
	}
	return p.err()
}

// checkConfigureValidity: Configure carries the group's validity (the host sends
// certificate.validity). A signer that honours any validity accepts one; a signer
// declared to sign for one lifetime accepts it and refuses another with
// FailedPrecondition, so that a group asking for another lifetime fails at Configure,
// not with certificates of the wrong life.
func checkConfigureValidity(e *env) error {
	if !e.launched.known {
		return notRun("started by a Starter of the test's own, which the kit cannot configure again: Configure's validity untested")
	}
	dir, err := os.MkdirTemp("", "plugintest-configure-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	configure := func(validity time.Duration) error {
		b, stop, err := e.start(dir)
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		defer stop()
		return b.Configure(e.ctx, sdk.ConfigureRequest{ConfigJSON: e.launched.config, StateDir: dir, Validity: validity})
	}
	fixed := e.opts.FixedValidity
	if fixed == 0 {
		if err := configure(30 * 24 * time.Hour); err != nil {
			return fmt.Errorf("Configure with the group's validity 720h: %w", err)
		}
		return nil
	}
	var p problems
	if err := configure(fixed); err != nil {
		p.addf("Configure with the validity it signs for (%s): %v", fixed, err)
	}
	if err := configure(fixed + 24*time.Hour); !sdk.IsCode(err, sdk.CodeFailedPrecondition) {
		p.addf("declared to sign for %s only, Configure with the group's validity %s answered %v, not FailedPrecondition", fixed, fixed+24*time.Hour, err)
	}
	return p.err()
}
