// Command tlsrelay-plugin-openssl is the openssl backend as a standalone plugin binary.
package main

import (
	"github.com/tlsrelay/tlsrelay/plugins/openssl"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func main() {
	sdk.Serve(openssl.New(sdk.Logger(openssl.Name)))
}
