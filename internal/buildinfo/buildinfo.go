// Package buildinfo says which build of tlsrelay is running: the module version, the VCS
// revision it was built from, whether the tree had changes, and when it was built. The
// Go toolchain stamps the first three into every binary built in a checkout
// (runtime/debug.ReadBuildInfo); a release sets the version and the build time with
// -ldflags "-X github.com/tlsrelay/tlsrelay/internal/buildinfo.version=v1.2.3
// -X github.com/tlsrelay/tlsrelay/internal/buildinfo.buildTime=2026-12-02T10:00:00Z".
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Set by -ldflags -X at release; empty otherwise.
var version, buildTime string

// Info is one build's description.
type Info struct {
	Version   string // v1.2.3, a pseudo-version from the VCS, or "dev"
	Revision  string // the VCS commit, "" when not built from a checkout
	Modified  bool   // the checkout had uncommitted changes
	CommitAt  string // the commit's time (RFC 3339), from the VCS
	BuildTime string // when the release was built (RFC 3339), "" outside a release
	Go        string // the Go toolchain
}

var (
	once sync.Once
	info Info
)

// Read returns this binary's build description.
func Read() Info {
	once.Do(func() { info = read(debug.ReadBuildInfo) })
	return info
}

func read(readBuildInfo func() (*debug.BuildInfo, bool)) Info {
	i := Info{Version: version, BuildTime: buildTime, Go: runtime.Version()}
	bi, ok := readBuildInfo()
	if !ok {
		if i.Version == "" {
			i.Version = "dev"
		}
		return i
	}
	if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		i.Version = bi.Main.Version
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		case "vcs.time":
			i.CommitAt = s.Value
		}
	}
	return i
}

// Version is the version alone, as plugins report it in their Info.
func Version() string { return Read().Version }

// String is one line: "v1.2.3 (revision 0123456789ab, modified, commit
// 2026-12-01T10:00:00Z, built 2026-12-02T10:00:00Z, go1.26.0)".
func (i Info) String() string {
	var parts []string
	if i.Revision != "" {
		parts = append(parts, "revision "+short(i.Revision))
	}
	if i.Modified {
		parts = append(parts, "modified")
	}
	if i.CommitAt != "" {
		parts = append(parts, "commit "+i.CommitAt)
	}
	if i.BuildTime != "" {
		parts = append(parts, "built "+i.BuildTime)
	}
	parts = append(parts, i.Go)
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(parts, ", "))
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
