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
units are asked to trust the new CA, only new units are signed; that phase waits at
most ca.rotation_trust_timeout (default 10m) for the units holding a certificate, then
goes on without those still missing (status names them); they renew with the rest.

--cancel withdraws a rotation requested that the leader has not begun. One begun runs
to its end: the old CA's key has left the signer.

The request is written under the relation's requests/ key: with etcd RBAC, use root's
credentials. A CA from ca.ref is not rotated here: store a new CA in the secrets backend.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return from.run(cmd, func(ctx context.Context, store relation.Store, cfg *config.Config) error {
				if cancel {
					return cancelRotation(ctx, cmd, store, cfg.Relation.Name)
				}
				id := strconv.FormatInt(time.Now().UnixNano(), 36)
				if err := store.Request(ctx, protocol.RequestRotateCA, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "requested CA rotation %s of relation %s\n", id, cfg.Relation.Name)
				if !wait {
					return nil
				}
				return awaitRotation(ctx, cmd, store, cfg.Relation.Name, id)
			})
		},
	}
	from.flags(cmd, 10*time.Minute, "following the rotation")
	cmd.Flags().BoolVar(&wait, "wait", true, "follow the rotation until it is done")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "withdraw a requested rotation the leader has not begun")
	cmd.MarkFlagsMutuallyExclusive("wait", "cancel")
	return cmd
}

// cancelRotation deletes a pending rotation request, and says so; a rotation the leader
// began cannot be withdrawn (it says where it stands instead).
func cancelRotation(ctx context.Context, cmd *cobra.Command, store relation.Store, relationName string) error {
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
		for snap.Requests[protocol.RequestRotateCA] != "" {
			select {
			case <-snap.Changed:
			case <-ctx.Done():
				return fmt.Errorf("withdrawing CA rotation %s: %w", id, ctx.Err())
			}
			if snap, err = obs.Snapshot(ctx); err != nil {
				return err
			}
		}
		if snap.LeaderData[protocol.KeyCARequest] != id {
			fmt.Fprintf(cmd.OutOrStdout(), "withdrew CA rotation %s of relation %s before the leader began it\n", id, relationName)
			return nil
		}
	}
	if g := status.FromSnapshot(relationName, snap); g.CARotation != nil {
		return fmt.Errorf("a CA rotation is under way and cannot be withdrawn (the old CA's key has left the signer): %s", termsafe.Escape(g.CAState))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "no CA rotation is requested or under way in relation %s\n", relationName)
	return nil
}

// awaitRotation prints each change of the leader's CA state until the leader has acted on
// request id and the group is steady again.
func awaitRotation(ctx context.Context, cmd *cobra.Command, store relation.Store, relationName, id string) error {
	obs, err := store.Observe(ctx)
	if err != nil {
		return err
	}
	defer obs.Close()
	last := ""
	for {
		snap, err := obs.Snapshot(ctx)
		if err != nil {
			return fmt.Errorf("CA rotation %s: %w (the rotation goes on; see tlsrelay status)", id, err)
		}
		g := status.FromSnapshot(relationName, snap)
		if g.CAState != last {
			last = g.CAState
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", orNoLeader(termsafe.Escape(g.Leader)), termsafe.Escape(g.CAState)) // the leader writes its bag
		}
		if snap.LeaderData[protocol.KeyCARequest] == id && g.CARotation == nil && g.CAState == protocol.CASteady {
			fmt.Fprintf(cmd.OutOrStdout(), "done: the group signs with CA %s\n", g.CASHA256)
			return nil
		}
		select {
		case <-snap.Changed:
		case <-ctx.Done():
			return fmt.Errorf("CA rotation %s: not done after --timeout (it goes on; see tlsrelay status): %s", id, g.CAState)
		}
	}
}

func orNoLeader(leader string) string {
	if leader == "" {
		return "(no leader)"
	}
	return leader
}
