package plugintest

import (
	"os"
	"strings"
	"testing"
)

// The sdk's README lists every check the kit runs, by the name a failure gives it.
func TestTheREADMEListsEveryCheck(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !strings.Contains(string(readme), "\n- "+c.name) {
			t.Errorf("sdk/README.md does not list the check %q", c.name)
		}
	}
}
