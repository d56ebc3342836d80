package agent

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tlsrelay/tlsrelay/core/caseal"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/internal/testkit/syncbuf"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// A CA rotation ends at its deadlines whatever a unit does. db/2 stays joined and keeps
// reporting the serial it was issued, but its agent does nothing (as a unit that never
// renews does): the trust phase goes on without it at ca.rotation_trust_timeout, the
// reissue phase ends without it at ca.rotation_reissue_timeout, its certificate of the
// old CA is revoked, and the old CA leaves every running unit's ca.crt.
func TestRotationEndsWithoutAUnitThatNeverRenews(t *testing.T) {
	c := newCluster(t)
	logs := &syncbuf.Buffer{} // every agent's, shown if the rotation does not end
	c.opts = func(o *Options) {
		o.SignerName, o.CARotationTrustTimeout, o.CARotationReissueTimeout = "cfssl", time.Second, 2*time.Second
		o.Log = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info, Name: o.Member.Unit()})
	}
	for _, u := range []string{"db/0", "db/1", "db/2"} {
		c.start(u)
		c.waitCerts(u) // db/0 joined first: it leads
	}
	held := c.waitCerts("db/2")["db/2"]
	old := held.Issuer.CommonName
	c.cancel["db/2"]() // its agent stops; its membership, and the serial in its bag, stay
	ctx := context.Background()
	if err := c.store.Request(ctx, protocol.RequestRotateCA, "r1"); err != nil {
		t.Fatal(err)
	}
	obs, err := c.store.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	deadline := time.Now().Add(30 * time.Second)
	var leaderData map[string]string
	for {
		s, err := obs.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rotated := s.LeaderData[protocol.KeyCARequest] == "r1"
		bundle, _ := certutil.ParseCertificates([]byte(s.LeaderData[protocol.KeyCA]))
		if rotated && s.LeaderData[protocol.KeyCARotation] == "" && len(bundle) == 1 && held.CheckSignatureFrom(bundle[0]) != nil {
			leaderData = s.LeaderData
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotation did not end without db/2: leader %q, request recorded %q, rotation %q, %d CAs in the bundle; the agents' logs:\n%s",
				s.Leader, s.LeaderData[protocol.KeyCARequest], s.LeaderData[protocol.KeyCARotation], len(bundle), logs)
		}
		select {
		case <-s.Changed:
		case <-time.After(time.Second):
		}
	}
	var revoked protocol.Revocation
	for _, r := range protocol.RevocationsOf(leaderData) {
		if r.Serial == held.SerialNumber.Text(16) {
			revoked = r
		}
	}
	if revoked.Unit != "db/2" || revoked.Reason != protocol.ReasonNotReissued {
		t.Fatalf("db/2's certificate of the old CA: revocation %+v, want it revoked as not reissued", revoked)
	}
	// The running units follow: each ends up trusting the new CA alone and holding one of
	// its certificates.
	newCA, _ := certutil.ParseCertificates([]byte(leaderData[protocol.KeyCA]))
	for _, u := range []string{"db/0", "db/1"} {
		for {
			local, _, err := files{dir: c.dir(u)}.loadLocal()
			if err != nil {
				t.Fatal(err)
			}
			trusted, _ := certutil.ParseCertificates([]byte(local.Installed.CAPEM))
			if len(trusted) == 1 && trusted[0].Equal(newCA[0]) && local.Installed.Cert.CheckSignatureFrom(newCA[0]) == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s trusts %d CAs and holds a certificate of %q; want the new CA %s alone (the old was %q)", u, len(trusted),
					local.Installed.Cert.Issuer.CommonName, caseal.Fingerprint(newCA[0].Raw)[:16], old)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
