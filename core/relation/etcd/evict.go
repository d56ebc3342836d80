package etcd

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// Evict takes unit out of relationName for good, as a compromised unit must be: its
// etcd user and role are deleted (it cannot authenticate again, so it cannot rejoin),
// the lease it holds is revoked and every key of its presence and bag deleted (its
// ghost keys too), and note is left as its departure note (the protocol's NoteGone has
// the leader revoke what it issued to it at once). It says what it did; the client must
// be root. Evicting a unit that is gone already does no harm. On a full etcd (the NOSPACE
// alarm) it deletes the unit's keys, gives the space back (Reclaim), then leaves the note.
func Evict(ctx context.Context, client *clientv3.Client, relationName string, schema relation.Schema, unit, note string) ([]string, error) {
	l := newLayout(relationName, schema)
	name := UserName(relationName, unit)
	var did []string
	if _, err := client.UserDelete(ctx, name); err == nil {
		did = append(did, "deleted etcd user "+name)
	} else if !errors.Is(err, rpctypes.ErrUserNotFound) {
		return did, fmt.Errorf("evict %s: delete etcd user: %w", unit, err)
	}
	if _, err := client.RoleDelete(ctx, name); err == nil {
		did = append(did, "deleted etcd role "+name)
	} else if !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return did, fmt.Errorf("evict %s: delete etcd role: %w", unit, err)
	}
	resp, err := client.Get(ctx, l.member(unit))
	if err != nil {
		return did, fmt.Errorf("evict %s: %w", unit, err)
	}
	if len(resp.Kvs) == 1 && resp.Kvs[0].Lease != 0 {
		if _, err := client.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return did, fmt.Errorf("evict %s: revoke its lease: %w", unit, err)
		}
		did = append(did, "revoked its lease")
	}
	txn, err := client.Txn(ctx).Then(clientv3.OpDelete(l.member(unit)), clientv3.OpDelete(l.bag(unit), clientv3.WithPrefix())).Commit()
	if err != nil {
		return did, fmt.Errorf("evict %s: delete its keys: %w", unit, err)
	}
	deleted := txn.Responses[0].GetResponseDeleteRange().Deleted + txn.Responses[1].GetResponseDeleteRange().Deleted
	did = append(did, fmt.Sprintf("deleted %d more of its keys", deleted))
	_, err = client.Put(ctx, l.away(unit), note)
	if errors.Is(err, rpctypes.ErrNoSpace) {
		// A full etcd (a flood, often by the very unit evicted) takes deletes but no
		// writes: with the unit's keys gone, its space is given back, then the note
		// written, so that what was issued to the unit is revoked without more ado.
		did = append(did, "etcd is full (its NOSPACE alarm is raised): reclaiming its space")
		reclaimed, rerr := Reclaim(ctx, client)
		did = append(did, reclaimed...)
		if rerr != nil {
			return did, fmt.Errorf("evict %s: etcd is full and giving its space back failed (%w); run `tlsrelay etcd reclaim`, then evict %s again", unit, rerr, unit)
		}
		_, err = client.Put(ctx, l.away(unit), note)
	}
	if err != nil {
		return did, fmt.Errorf("evict %s: leave its note: %w", unit, err)
	}
	return append(did, fmt.Sprintf("left the note %q", note)), nil
}

// Note returns the departure note unit left in relationName ("" for none): Evict's, or
// the unit's own (the protocol's NoteBack, NoteGone).
func Note(ctx context.Context, client *clientv3.Client, relationName string, schema relation.Schema, unit string) (string, error) {
	resp, err := client.Get(ctx, newLayout(relationName, schema).away(unit))
	if err != nil {
		return "", fmt.Errorf("%s's note: %w", unit, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
