package plugintest

import (
	"testing"
)

func TestRepeatedProblemsAreCollapsed(t *testing.T) {
	var p problems
	for range 19 {
		p.addf("SignCSR peer: unavailable: the signer is down")
	}
	p.addf("serial 7 repeats")
	want := "SignCSR peer: unavailable: the signer is down (19 times)\nserial 7 repeats"
	if err := p.err(); err == nil || err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	if (problems{}).err() != nil {
		t.Fatal("no problems must be a nil error")
	}
}
