// Command tlsrelay-plugin-barbican is the Barbican backend as a standalone plugin binary.
package main

import (
	"github.com/tlsrelay/tlsrelay/plugins/barbican"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func main() {
	sdk.Serve(barbican.New(sdk.Logger(barbican.Name)))
}
