// Command tlsrelay-plugin-pkcs11 serves the pkcs11 backend: a signer whose CA key lives
// in a PKCS#11 token and never leaves it. Pin it in tlsrelay's config:
//
//	roles: {csr: cfssl, signer: hsm}
//	plugins:
//	  hsm:
//	    command: /usr/lib/tlsrelay/tlsrelay-plugin-pkcs11
//	    sha256: "<tlsrelay plugins sha256 PATH>"
//	    env: [SOFTHSM2_CONF]
//	    config: {module: /usr/lib/softhsm/libsofthsm2.so, token_label: tlsrelay, pin_file: /etc/tlsrelay/token.pin}
package main

import (
	"github.com/tlsrelay/tlsrelay/plugins/pkcs11"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func main() { sdk.Serve(pkcs11.New()) }
