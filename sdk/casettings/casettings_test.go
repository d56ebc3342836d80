package casettings

import (
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/sdk"
)

func TestParse(t *testing.T) {
	p, err := Defaults("x CA").Parse()
	if err != nil || p.CAValidity != 87600*time.Hour || p.DefaultValidity != 720*time.Hour || p.CACommonName != "x CA" {
		t.Fatalf("Defaults().Parse() = %+v, %v", p, err)
	}
	for _, tt := range []struct {
		s    Settings
		want string
	}{
		{Settings{CACommonName: "", CAValidity: "1h", DefaultValidity: "1h"}, "config.ca_common_name"},
		{Settings{CACommonName: "x", CAValidity: "forever", DefaultValidity: "1h"}, "config.ca_validity"},
		{Settings{CACommonName: "x", CAValidity: "1h", DefaultValidity: "-1h"}, "config.default_validity"},
	} {
		_, err := tt.s.Parse()
		if !sdk.IsCode(err, sdk.CodeInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%+v) = %v, want invalid argument naming %s", tt.s, err, tt.want)
		}
	}
}
