package barbican

import "github.com/tlsrelay/tlsrelay/plugins/internal/secretparse"

// The parsing of what a container or a secret holds is shared with the file backend
// (secretparse): the same bundle reads the same wherever it is kept.
var (
	assemble      = secretparse.Assemble
	fromPEMBundle = secretparse.FromPEMBundle
	fromPKCS12    = secretparse.FromPKCS12
)
