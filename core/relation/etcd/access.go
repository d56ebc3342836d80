package etcd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/relation"
)

// UnitAccess is what one unit may do in a relation, enforced by etcd's RBAC.
type UnitAccess struct {
	Unit string
	// LeaderEligible units may campaign and write leader data; the others only ask.
	LeaderEligible bool
	// Password is set on the unit's etcd user. With client-certificate authentication
	// etcd takes the user from the certificate's CN instead, and the password is unused.
	Password string
}

// UserName is the etcd user, and the role, of unit in relationName. One name per
// (relation, unit), so two relations on one cluster never share a user.
func UserName(relationName, unit string) string {
	return "tlsrelay/" + relationName + "/" + unit
}

// permission is one range a role may read or write.
type permission struct {
	key, rangeEnd string
	kind          clientv3.PermissionType
}

// The permission kinds, as the client's API takes them.
var (
	readOnly  = clientv3.PermissionType(clientv3.PermRead)
	readWrite = clientv3.PermissionType(clientv3.PermReadWrite)
)

func exact(key string, kind clientv3.PermissionType) permission {
	return permission{key: key, kind: kind}
}

func prefixed(prefix string, kind clientv3.PermissionType) permission {
	return permission{key: prefix, rangeEnd: clientv3.GetPrefixRangeEnd(prefix), kind: kind}
}

// permissions is the role of one unit:
//   - every unit writes its own presence key and its own bag, nothing else of anyone's:
//     each field the schema knows (and its departure note) by its exact key, so a unit
//     cannot add keys of its own (it reads its whole bag, to see what it wrote);
//   - a unit that only asks reads exactly what its narrow view follows (who leads, the CA,
//     its own certificate and rejection), so it learns nothing of its peers;
//   - a leader-eligible unit reads the whole relation and writes `elected` (it campaigns)
//     and leader data. etcd cannot tell which eligible unit leads now: that is the fence
//     on every leader write (see SetLeaderData).
func (l layout) permissions(a UnitAccess) []permission {
	perms := []permission{exact(l.member(a.Unit), readWrite)}
	if l.schema.BagFields == nil {
		perms = append(perms, prefixed(l.bag(a.Unit), readWrite))
	} else {
		perms = append(perms, prefixed(l.bag(a.Unit), readOnly), exact(l.away(a.Unit), readWrite))
		for _, f := range slices.Sorted(maps.Keys(l.schema.BagFields)) {
			perms = append(perms, exact(l.field(a.Unit, f), readWrite))
		}
	}
	if !a.LeaderEligible {
		perms = append(perms, exact(l.elected(), readOnly))
		for _, k := range l.schema.NarrowKeys(a.Unit) {
			perms = append(perms, exact(l.leaderKey(k), readOnly))
		}
		return perms
	}
	return append(perms,
		prefixed(l.everything(), readOnly),
		exact(l.elected(), readWrite),
		prefixed(l.leaderData(), readWrite))
}

// GrantAccess gives each unit an etcd user and role holding exactly its permissions in
// relationName, whose keys have the meaning schema gives them. It is idempotent: an existing user gets the given password, an existing
// role loses whatever it held before (a unit no longer eligible loses leader/).
// The client must be authenticated as root once auth is enabled (see EnableAuth).
func GrantAccess(ctx context.Context, client *clientv3.Client, relationName string, schema relation.Schema, units []UnitAccess) error {
	l := newLayout(relationName, schema)
	for _, a := range units {
		if a.Unit == "" {
			return fmt.Errorf("etcd access: a unit has no name")
		}
		name := UserName(relationName, a.Unit)
		if err := setRole(ctx, client, name, l.permissions(a)); err != nil {
			return err
		}
		if err := ensureUser(ctx, client, name, a.Password); err != nil {
			return err
		}
		if _, err := client.UserGrantRole(ctx, name, name); err != nil {
			return fmt.Errorf("etcd user %s: grant role: %w", name, err)
		}
	}
	return nil
}

// setRole makes the role hold exactly perms: it grants every wanted permission first
// (a grant on a key the role has replaces its type), then revokes the others, so that
// re-running the bootstrap under a running group never leaves a role without the
// permissions its unit is using (a unit refused mid-campaign used to stop leading).
func setRole(ctx context.Context, client *clientv3.Client, name string, perms []permission) error {
	if _, err := client.RoleAdd(ctx, name); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("etcd role %s: %w", name, err)
	}
	wanted := map[[2]string]bool{}
	for _, p := range perms {
		wanted[[2]string{p.key, p.rangeEnd}] = true
		if _, err := client.RoleGrantPermission(ctx, name, p.key, p.rangeEnd, p.kind); err != nil {
			return fmt.Errorf("etcd role %s: grant %s on %q: %w", name, authpb.Permission_Type(p.kind), p.key, err)
		}
	}
	role, err := client.RoleGet(ctx, name)
	if err != nil {
		return fmt.Errorf("etcd role %s: %w", name, err)
	}
	for _, p := range role.Perm {
		if wanted[[2]string{string(p.Key), string(p.RangeEnd)}] {
			continue
		}
		if _, err := client.RoleRevokePermission(ctx, name, string(p.Key), string(p.RangeEnd)); err != nil {
			return fmt.Errorf("etcd role %s: revoke %q: %w", name, p.Key, err)
		}
	}
	return nil
}

func ensureUser(ctx context.Context, client *clientv3.Client, name, password string) error {
	if password == "" {
		return fmt.Errorf("etcd user %s: no password", name)
	}
	_, err := client.UserAdd(ctx, name, password)
	if errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		_, err = client.UserChangePassword(ctx, name, password)
	}
	if err != nil {
		return fmt.Errorf("etcd user %s: %w", name, err)
	}
	return nil
}

// EnableAuth turns on etcd's authentication with a root user holding rootPassword. It is
// idempotent: an existing root user keeps its password (the client may be using it), and
// on a cluster whose auth is on already the client must be root.
func EnableAuth(ctx context.Context, client *clientv3.Client, rootPassword string) error {
	if rootPassword == "" {
		return fmt.Errorf("etcd user root: no password")
	}
	if _, err := client.UserAdd(ctx, "root", rootPassword); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("etcd user root: %w", err)
	}
	if _, err := client.UserGrantRole(ctx, "root", "root"); err != nil {
		return fmt.Errorf("etcd user root: grant role root: %w", err)
	}
	if _, err := client.AuthEnable(ctx); err != nil {
		return fmt.Errorf("etcd: enable auth: %w", err)
	}
	return nil
}
