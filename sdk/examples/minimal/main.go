// Command minimal is a complete tlsrelay backend plugin in about 150 lines: keys, CSRs,
// a CA kept in the state directory, and signing, with Go's standard library only. It
// passes the conformance kit (sdk/plugintest); see backend_test.go.
package main

import "github.com/tlsrelay/tlsrelay/sdk"

func main() {
	sdk.Serve(&minimal{})
}
