package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	stamped := func(v string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: v}, Settings: settings}, true
		}
	}
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}}
	tests := []struct {
		name       string
		ldVersion  string
		ldTime     string
		read       func() (*debug.BuildInfo, bool)
		want, line string
	}{
		{"no build info", "", "", func() (*debug.BuildInfo, bool) { return nil, false }, "dev", "dev ("},
		{"a checkout", "", "", stamped("(devel)", vcs...), "dev", "dev (revision 0123456789ab, modified, commit 2026-12-01T10:00:00Z, go"},
		{"a pseudo-version", "", "", stamped("v0.0.0-20261201100000-0123456789ab"), "v0.0.0-20261201100000-0123456789ab", "v0.0.0-20261201100000-0123456789ab (go"},
		{"a release", "v1.2.3", "2026-12-02T10:00:00Z", stamped("(devel)", vcs[0]), "v1.2.3", "v1.2.3 (revision 0123456789ab, built 2026-12-02T10:00:00Z, go"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			version, buildTime = tt.ldVersion, tt.ldTime
			defer func() { version, buildTime = "", "" }()
			got := read(tt.read)
			if got.Version != tt.want || !strings.HasPrefix(got.String(), tt.line) {
				t.Fatalf("read = %q, %q; want version %q and a line starting %q", got.Version, got.String(), tt.want, tt.line)
			}
		})
	}
}
