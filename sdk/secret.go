package sdk

import "fmt"

// PrivateKey holds private key material (PEM) or a passphrase. It prints as [redacted]
// with every fmt verb, so a key that strays into a log line or an error shows nothing.
type PrivateKey []byte

const redacted = "[redacted]"

// String returns a placeholder, never the key.
func (PrivateKey) String() string { return redacted }

// GoString returns a placeholder, never the key.
func (PrivateKey) GoString() string { return redacted }

// Format prints a placeholder for every verb, including %x and %q.
func (PrivateKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, redacted) }
