package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
)

func newRevokeCommand() *cobra.Command {
	var from outsider
	cmd := &cobra.Command{
		Use:   "revoke UNIT [--config FILE | --dir DIR]",
		Short: "Decommission a unit that has stopped: the leader revokes every certificate issued to it at once",
		Long: `revoke marks UNIT gone for good: the leader puts every unexpired certificate it issued
to the unit into the group's CRL at once, and forgets the unit. The unit must not be
running (stop its agent first: a running unit would ask for a new certificate). It
waits until the leader has acted (--timeout), printing the serials revoked.

What marks a unit gone otherwise: an agent stopped by SIGTERM or after --once says it
will be back, and its certificates are not revoked (they expire); a unit that vanishes
without a word (a crash, a lost host, a partition) is revoked ca.revoke_departed_after
after it left, unless it is back by then. 'tlsrelay agent --leave' does what this
command does, with the unit's own config.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return from.run(cmd, func(ctx context.Context, store relation.Store, _ *config.Config) error {
				return retire(ctx, cmd, store, args[0])
			})
		},
	}
	from.flags(cmd, time.Minute, "waiting for the leader")
	return cmd
}

// retire leaves the gone note for unit and waits until the leader has revoked what it
// issued to it and forgotten it.
func retire(ctx context.Context, cmd *cobra.Command, store relation.Store, unit string) error {
	obs, snap, err := observeRelation(ctx, store)
	if err != nil {
		return fmt.Errorf("revoke %s: %w", unit, err)
	}
	defer obs.Close()
	if _, joined := snap.Units[unit]; !joined && forgotten(snap, unit) {
		return fmt.Errorf("revoke %s: the group holds no certificate issued to %s (is the name right? tlsrelay status lists the units)", unit, unit)
	}
	if err := store.SetAway(ctx, unit, protocol.NoteGone); errors.Is(err, relation.ErrJoined) {
		return fmt.Errorf("%s is joined: stop its agent first, or it asks for a new certificate at once", unit)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: marked gone for good; waiting for the leader to revoke its certificates\n", unit)
	for {
		snap, err := obs.Snapshot(ctx)
		if err != nil {
			return fmt.Errorf("revoke %s: %w", unit, err)
		}
		noCRL := protocol.DecodeUnitStatus(snap.Units[snap.Leader]).NoCRL
		if forgotten(snap, unit) || noCRL && recordedInForce(snap, unit) {
			var serials []string
			for _, r := range protocol.RevocationsOf(snap.LeaderData) {
				if r.Unit == unit {
					serials = append(serials, r.Serial)
				}
			}
			slices.Sort(serials)
			if noCRL {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: recorded %d certificate(s) as revoked: %s; the leader's signer signs no CRL, "+
					"so they stay valid (and keep their names) until they expire\n", unit, len(serials), strings.Join(serials, " "))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: revoked %d certificate(s): %s\n", unit, len(serials), strings.Join(serials, " "))
			return nil
		}
		select {
		case <-snap.Changed:
		case <-ctx.Done():
			return fmt.Errorf("revoke %s: the leader (%s) has not acted within --timeout; it will when it can: the note stays", unit, orNoLeader(snap.Leader))
		}
	}
}

// forgotten: the leader holds nothing of unit's in leader data any more: what it was
// issued is revoked, and the published CRL lists it.
func forgotten(snap relation.Snapshot, unit string) bool {
	for _, key := range protocol.UnitKeys(unit) {
		if snap.LeaderData[key] != "" {
			return false
		}
	}
	return true
}

// recordedInForce: the leader has recorded, in force, a revocation of unit's (what a
// leader whose signer signs no CRL can do).
func recordedInForce(snap relation.Snapshot, unit string) bool {
	for _, r := range protocol.RevocationsOf(snap.LeaderData) {
		if r.Unit == unit && r.Retired {
			return true
		}
	}
	return false
}
