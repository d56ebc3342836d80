package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation"
	"github.com/tlsrelay/tlsrelay/internal/app/status"
	"github.com/tlsrelay/tlsrelay/internal/termsafe"
	"github.com/tlsrelay/tlsrelay/sdk"
)

func newCACommand() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The group's CA"}
	cmd.AddCommand(newCARotateCommand())
	return cmd
}

func newCARotateCommand() *cobra.Command {
	var from outsider
	var wait, cancel bool
	cmd := &cobra.Command{
		Use:   "rotate [--config FILE | --dir DIR] [--wait | --cancel]",
		Short: "Rotate the group to a new CA without a failed handshake",
		Long: `rotate asks the group's leader for a new CA. The leader makes one like the current CA
(its name and lifetime), imports it into its signer, and rotates the group in phases:
every unit first trusts the new CA beside the old, then every unit is re-issued by the
new CA, then the old CA leaves the bundle. 'tlsrelay status' shows the phase. While
units are asked to trust the new CA, nothing is signed; that phase waits at most
ca.rotation_trust_timeout (default 10m) for the units holding a certificate, then goes
on without those still missing (status names them); they renew with the rest. The
re-issue waits at most ca.rotation_reissue_timeout (default 1h): then the rotation
ends, and the units not re-issued (named in the audit trail) have their certificates of
the old CA revoked. Every rotation ends, whatever a unit does.

--cancel withdraws a rotation the leader has not begun, or takes the group back from one
under way: the leader imports the old CA from its sealed copy (ca_seal), units holding a
certificate of the new CA renew under the old one, and the new CA leaves the bundle. It
follows that until the group is steady, as a rotation is followed. The leader refuses
what it cannot undo (no sealed key of the old CA, an old CA near its expiry, a rotation
that is itself a cancel) and the command says why.

The request is written under the relation's requests/ key: with etcd RBAC, use root's
credentials, from the environment over the config's unit user:
  TLSRELAY_RELATION_ETCD_USERNAME=root TLSRELAY_RELATION_ETCD_PASSWORD_FILE=/root/etcd-root.password \
    tlsrelay ca rotate --config FILE
A CA from ca.ref is not rotated here: store a new CA in the secrets backend.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return from.run(cmd, func(ctx context.Context, store relation.Store, cfg *config.Config) error {
				if cancel {
					return cancelRotation(ctx, cmd, store, cfg.Relation.Name, wait)
				}
				if err := rotatable(ctx, store, cfg.Relation.Name, wait); err != nil {
					return err
				}
				id := strconv.FormatInt(time.Now().UnixNano(), 36)
				if err := store.Request(ctx, protocol.RequestRotateCA, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "requested CA rotation %s of relation %s\n", id, cfg.Relation.Name)
				if !wait {
					return nil
				}
				return awaitRotation(ctx, cmd, store, cfg.Relation.Name, "CA rotation "+id, func(snap relation.Snapshot) (bool, error) {
					if snap.LeaderData[protocol.KeyCARequest] != id {
						return false, nil
					}
					if why := snap.LeaderData[protocol.KeyCARotateRefused]; why != "" && snap.LeaderData[protocol.KeyCARotation] == "" {
						return false, fmt.Errorf("the leader refused CA rotation %s: %s", id, termsafe.Escape(why))
					}
					return true, nil
				})
			})
		},
	}
	from.flags(cmd, 10*time.Minute, "following the rotation")
	cmd.Flags().BoolVar(&wait, "wait", true, "follow the rotation (or its cancel) until the group is steady")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "withdraw a requested rotation, or take the group back from one under way")
	return cmd
}

// cancelRotation withdraws a rotation request the leader has not acted on; if a rotation
// is under way it asks the leader to take the group back, and follows that if wait.
func cancelRotation(ctx context.Context, cmd *cobra.Command, store relation.Store, relationName string, wait bool) error {
	obs, snap, err := observeRelation(ctx, store)
	if err != nil {
		return err
	}
	defer obs.Close()
	id := snap.Requests[protocol.RequestRotateCA]
	if id != "" && id != snap.LeaderData[protocol.KeyCARequest] {
		if err := store.Request(ctx, protocol.RequestRotateCA, ""); err != nil {
			return err
		}
		// The leader may have begun it meanwhile: look again once the request is gone.
		if snap, err = awaitSnapshot(ctx, obs, snap, "withdrawing CA rotation "+id, func(s relation.Snapshot) bool {
			return s.Requests[protocol.RequestRotateCA] == ""
		}); err != nil {
			return err
		}
		if snap.LeaderData[protocol.KeyCARequest] != id {
			fmt.Fprintf(cmd.OutOrStdout(), "withdrew CA rotation %s of relation %s before the leader began it\n", id, relationName)
			return nil
		}
	}
	rot, ok := protocol.DecodeRotation(snap.LeaderData[protocol.KeyCARotation])
	if !ok {
		fmt.Fprintf(cmd.OutOrStdout(), "no CA rotation is requested or under way in relation %s\n", relationName)
		return nil
	}
	if rot.Cancelled {
		return fmt.Errorf("the CA rotation under way is itself a cancel (%s): let it end, then request a new rotation", termsafe.Escape(rot.Reason))
	}
	cancelID := strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := store.Request(ctx, protocol.RequestCancelRotation, cancelID); err != nil {
		return err
	}
	what := "cancel " + cancelID + " of the CA rotation"
	if snap, err = awaitSnapshot(ctx, obs, snap, what+" (the request stays: the next leader acts on it)", func(s relation.Snapshot) bool {
		return s.LeaderData[protocol.KeyCACancel] == cancelID
	}); err != nil {
		return err
	}
	// The way back may be over already (only units signed by the new CA renew).
	now, under := protocol.DecodeRotation(snap.LeaderData[protocol.KeyCARotation])
	if under && !now.Cancelled || !under && status.FromSnapshot(relationName, snap).CASHA256 != rot.From {
		why := now.CancelRefused
		if !under {
			why = "the rotation ended first"
		}
		return fmt.Errorf("the leader did not cancel the CA rotation: %s", termsafe.Escape(why))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "the leader cancels the CA rotation of relation %s: the group goes back to CA %s\n", relationName, rot.From)
	if !wait {
		return nil
	}
	return awaitRotation(ctx, cmd, store, relationName, what, func(s relation.Snapshot) (bool, error) {
		return s.LeaderData[protocol.KeyCACancel] == cancelID, nil
	})
}

// rotatable refuses a rotation the leader's signer cannot make (a remote CA moves at its
// service), and one nothing would act on while the command waits: no unit leads (the
// group is not running). Other refusals are the leader's, once it sees the request.
func rotatable(ctx context.Context, store relation.Store, relationName string, wait bool) error {
	obs, snap, err := observeRelation(ctx, store)
	if err != nil {
		return err
	}
	obs.Close()
	if snap.Leader == "" && wait {
		return fmt.Errorf("no unit of relation %s leads, so none would act on a rotation (is the group running? a group `up` ran stops with it); "+
			"--wait=false leaves the request for the next leader", relationName)
	}
	if g := status.FromSnapshot(relationName, snap); g.CACustody == string(sdk.CustodyRemote) {
		return fmt.Errorf("the leader's signer (%s) keeps the group's CA remote: rotate it at its service, and the group follows it; "+
			"tlsrelay ca rotate cannot make a new one", termsafe.Escape(g.CASigner))
	}
	return nil
}

// awaitSnapshot returns the first snapshot from snap on for which done holds.
func awaitSnapshot(ctx context.Context, obs relation.Observer, snap relation.Snapshot, what string, done func(relation.Snapshot) bool) (relation.Snapshot, error) {
	for !done(snap) {
		select {
		case <-snap.Changed:
		case <-ctx.Done():
			return snap, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		var err error
		if snap, err = obs.Snapshot(ctx); err != nil {
			return snap, err
		}
	}
	return snap, nil
}

// awaitRotation prints each change of the leader's CA state until the leader has acted
// on the request (actedOn) and the group is steady again.
func awaitRotation(ctx context.Context, cmd *cobra.Command, store relation.Store, relationName, what string, actedOn func(relation.Snapshot) (bool, error)) error {
	obs, err := store.Observe(ctx)
	if err != nil {
		return err
	}
	defer obs.Close()
	last := ""
	for {
		snap, err := obs.Snapshot(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w (it goes on; see tlsrelay status)", what, err)
		}
		g := status.FromSnapshot(relationName, snap)
		if g.CAState != last {
			last = g.CAState
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", orNoLeader(termsafe.Escape(g.Leader)), termsafe.Escape(orNoState(g.CAState))) // the leader writes its bag
		}
		acted, err := actedOn(snap)
		if err != nil {
			return err
		}
		if acted && g.CARotation == nil && g.CAState == protocol.CASteady {
			fmt.Fprintf(cmd.OutOrStdout(), "done: the group signs with CA %s\n", g.CASHA256)
			return nil
		}
		select {
		case <-snap.Changed:
		case <-ctx.Done():
			return fmt.Errorf("%s: not done after --timeout (it goes on; see tlsrelay status): %s", what, termsafe.Escape(orNoState(g.CAState)))
		}
	}
}

func orNoState(state string) string {
	if state == "" {
		return "the leader has published no CA state"
	}
	return state
}

func orNoLeader(leader string) string {
	if leader == "" {
		return "(no leader)"
	}
	return leader
}
