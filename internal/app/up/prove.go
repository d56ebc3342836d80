package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/tlsrelay/tlsrelay/core/policy"
	"github.com/tlsrelay/tlsrelay/internal/app/verify"
)

// prove checks the group's files, that every unit holds the same CA bundle, that no name
// only one unit may hold (pol) is in two certificates, and mutual TLS: between
// neighbours in a ring, or between every pair with allPairs. Then it prints the table.
func prove(ctx context.Context, out io.Writer, p *progress, units []verify.Unit, pol *policy.Policy, parallel int, allPairs bool) error {
	ids, err := verify.LoadAll(units)
	if err == nil {
		err = verify.SameCA(ids)
	}
	if err == nil {
		err = verify.OneHolder(ids, pol.Exclusive)
	}
	if err != nil {
		fmt.Fprintf(out, "FAILED: %v\n", err)
		return ErrNotProven
	}
	pairs, shape := verify.Sides(units, allPairs), "ring"
	switch {
	case allPairs && len(pairs) == len(ids)*(len(ids)-1):
		shape = "all pairs"
	case allPairs:
		shape = "every client to every server"
	case !slices.Equal(pairs, verify.Ring(len(ids))):
		shape = "clients to servers, each unit at least once"
	}
	start := time.Now()
	handshakes, mtlsErr := verify.MutualTLS(ctx, ids, pairs, parallel)
	tookTLS := time.Since(start).Round(time.Millisecond)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tSTATE\tSERIAL\tNOT AFTER")
	for _, id := range ids {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id.Name, p.get(id.Name).State,
			id.Cert.SerialNumber.Text(16), id.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	tw.Flush()

	want := len(pairs)
	fmt.Fprintf(out, "\n%d certificates chain to CA %q and name their units (CN and DNS SAN); %d keys are mode 0600; one CA bundle\n",
		len(ids), ids[0].Cert.Issuer.CommonName, len(ids))
	fmt.Fprintf(out, "%d/%d mutual-TLS handshakes (%s; TLS 1.3, both sides verified) in %s\n", handshakes, want, shape, tookTLS)
	if mtlsErr != nil || handshakes != want {
		fmt.Fprintf(out, "FAILED: %v\n", mtlsErr)
		return ErrNotProven
	}
	fmt.Fprintf(out, "OK: %d units up in %s\n", len(ids), p.elapsed())
	return nil
}

// ErrNotProven is returned when the proof fails; the table says why.
var ErrNotProven = errors.New("the group's certificates did not prove out")
