package agent

import (
	"os"
	"time"
)

// chainCRLFile is the last read of ca.chain_crl_file: read again when its size or time
// changes, so that a leader follows the enterprise's CRLs as an operator's job refreshes
// them, without reading the file at every step.
type chainCRLFile struct {
	mod    time.Time
	size   int64
	pem    string
	failed string // the last failure logged, so each is said once
}

// chainCRL is what ca.chain_crl_file holds, for a leader; "" when none is configured,
// when the unit does not lead, or when it was never read (a failure is logged, naming
// the file, and the last good read is kept).
func (a *Agent) chainCRL(leader bool) string {
	path, c := a.opts.CAChainCRLFile, &a.chainCRLs
	if !leader || path == "" {
		return ""
	}
	st, err := os.Stat(path)
	if err == nil && st.ModTime().Equal(c.mod) && st.Size() == c.size {
		return c.pem
	}
	var b []byte
	if err == nil {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		if msg := err.Error(); msg != c.failed {
			a.log.Warn("cannot read ca.chain_crl_file; publishing the CRLs read before, if any", "file", path, "error", err)
			c.failed = msg
		}
		return c.pem
	}
	c.mod, c.size, c.pem, c.failed = st.ModTime(), st.Size(), string(b), ""
	return c.pem
}
