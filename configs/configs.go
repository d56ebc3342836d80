// Package configs embeds tlsrelay's default configuration, so that the binary runs with
// nothing else on disk.
package configs

import _ "embed"

// Default is configs/tlsrelay.yaml.
//
//go:embed tlsrelay.yaml
var Default []byte
