// Package fault sorts failures into permanent and transient. A permanent one (a plugin
// binary whose checksum differs, a capability the backend lacks, a config the backend
// refuses, an output path that is not a directory) cannot be mended by trying again:
// `tlsrelay agent` and `tlsrelay up` stop on it at once, with the cause as their last
// line and ExitPermanent as their status. Everything else is retried with backoff.
package fault

import (
	"errors"

	"github.com/tlsrelay/tlsrelay/sdk"
)

// ExitPermanent is the exit status of a command stopped by a permanent failure
// (1 is any other failure).
const ExitPermanent = 2

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as permanent (nil stays nil).
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked permanent, or is a
// backend's Unimplemented (a capability it lacks).
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) || sdk.IsCode(err, sdk.CodeUnimplemented)
}
