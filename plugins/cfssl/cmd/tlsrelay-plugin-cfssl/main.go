// Command tlsrelay-plugin-cfssl is the cfssl backend as a standalone plugin binary, the
// way a third party ships one: name it in the YAML with `command:` and its `sha256:`.
package main

import (
	"github.com/tlsrelay/tlsrelay/plugins/cfssl"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func main() {
	sdk.Serve(cfssl.New(sdk.Logger(cfssl.Name)))
}
