// Package etcdaccess sets up etcd's RBAC for a relation: one etcd user per unit, able to
// write only its own presence and bag; only leader-eligible units may campaign and write
// leader data. It is what `tlsrelay etcd bootstrap` runs, with root credentials, once per
// relation (and again whenever units are added: it is idempotent).
package etcdaccess

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/assemble"
	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/safedir"
)

// Options say which units get which access, and where their passwords live.
type Options struct {
	// Config names the etcd cluster (relation.etcd: endpoints, TLS) and the relation.
	Config *config.Config
	// LeaderEligible units may lead and sign; Members only ask for certificates.
	LeaderEligible, Members []string
	// CredentialsDir holds one password file per unit (PasswordFile). A file that exists
	// is kept and its password set on the user, so a rerun changes nothing; a missing one
	// is created with 24 random bytes.
	CredentialsDir string
	// RootUser and RootPassword authenticate the bootstrap (etcd's root user).
	RootUser, RootPassword string
	// EnableAuth creates the root user (with RootPassword) when it is missing and turns
	// etcd's authentication on. Without it, a cluster whose auth is off is refused: the
	// roles would enforce nothing.
	EnableAuth bool
	Out        io.Writer
}

// PasswordFile is where unit's password is kept in dir: the unit name with '/' as '_'.
func PasswordFile(dir, unitName string) string {
	return filepath.Join(dir, strings.ReplaceAll(unitName, "/", "_")+".password")
}

// Bootstrap grants every unit its role and reports, per unit, the user and password file
// to put in that unit's config.
func Bootstrap(ctx context.Context, opts Options) error {
	units, err := plan(opts)
	if err != nil {
		return err
	}
	cfg := *opts.Config
	cfg.Relation.Etcd.Username, cfg.Relation.Etcd.Password, cfg.Relation.Etcd.PasswordFile = opts.RootUser, opts.RootPassword, ""
	store, err := assemble.Etcd(&cfg, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	client := store.Client()
	enabled, err := authEnabled(ctx, client, opts.RootUser, opts.RootPassword)
	if err != nil {
		return fmt.Errorf("etcd %v: %w", cfg.Relation.Etcd.Endpoints, err)
	}
	if !enabled && !opts.EnableAuth {
		return fmt.Errorf("etcd %v: authentication is off, so roles would enforce nothing; "+
			"pass --enable-auth to create the root user and turn it on", cfg.Relation.Etcd.Endpoints)
	}
	if err := renewEvicted(ctx, client, opts, units); err != nil {
		return err
	}
	if err := etcd.GrantAccess(ctx, client, cfg.Relation.Name, protocol.Schema(), units); err != nil {
		return err
	}
	if !enabled {
		if err := etcd.EnableAuth(ctx, client, opts.RootPassword); err != nil {
			return err
		}
		fmt.Fprintf(opts.Out, "etcd authentication enabled (user %s)\n", opts.RootUser)
	}
	report(opts, units)
	return nil
}

// authEnabled asks etcd by authenticating, which etcd 3.4 (no AuthStatus) answers too.
func authEnabled(ctx context.Context, client *clientv3.Client, user, password string) (bool, error) {
	_, err := client.Authenticate(ctx, user, password)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, rpctypes.ErrAuthNotEnabled):
		return false, nil
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return false, fmt.Errorf("user %s: authentication failed (wrong root password?)", user)
	}
	return false, err
}

// plan checks the unit lists and reads or makes each unit's password.
func plan(opts Options) ([]etcd.UnitAccess, error) {
	if len(opts.LeaderEligible)+len(opts.Members) == 0 {
		return nil, fmt.Errorf("no units: name them with --leader-eligible and --members")
	}
	if opts.CredentialsDir == "" {
		return nil, fmt.Errorf("--credentials-dir: must be set (each unit's password is kept there)")
	}
	if opts.RootPassword == "" {
		return nil, fmt.Errorf("no root password: give --root-password-file or TLSRELAY_ETCD_ROOT_PASSWORD")
	}
	if err := os.MkdirAll(opts.CredentialsDir, 0o700); err != nil {
		return nil, fmt.Errorf("--credentials-dir: %w", err)
	}
	var units []etcd.UnitAccess
	files := map[string]string{}
	for _, u := range append(slices.Clone(opts.LeaderEligible), opts.Members...) {
		file := PasswordFile(opts.CredentialsDir, u)
		if other, dup := files[file]; dup {
			return nil, fmt.Errorf("units %q and %q: named twice, or both kept in %s", other, u, file)
		}
		files[file] = u
		password, err := passwordFor(file)
		if err != nil {
			return nil, fmt.Errorf("unit %s: %w", u, err)
		}
		units = append(units, etcd.UnitAccess{Unit: u, Password: password,
			LeaderEligible: slices.Contains(opts.LeaderEligible, u)})
	}
	return units, nil
}

// renewEvicted gives each unit that was evicted (marked gone for good) a new password: the
// one in its file is the one the evicted unit holds, and would let it back.
func renewEvicted(ctx context.Context, client *clientv3.Client, opts Options, units []etcd.UnitAccess) error {
	for i, u := range units {
		note, err := etcd.Note(ctx, client, opts.Config.Relation.Name, protocol.Schema(), u.Unit)
		if err != nil {
			return err
		}
		if note != protocol.NoteGone {
			continue
		}
		file := PasswordFile(opts.CredentialsDir, u.Unit)
		password, err := newPassword(file)
		if err != nil {
			return fmt.Errorf("unit %s: %w", u.Unit, err)
		}
		units[i].Password = password
		fmt.Fprintf(opts.Out, "unit %s was evicted (marked gone): a new password in %s; the old one opens nothing\n", u.Unit, file)
	}
	return nil
}

// passwordFor reads file, or creates it with a new random password.
func passwordFor(file string) (string, error) {
	data, err := safedir.ReadSecret(file)
	if err == nil {
		password := strings.TrimRight(string(data), "\r\n")
		if password == "" {
			return "", fmt.Errorf("%s: empty", file)
		}
		return password, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return newPassword(file)
}

// newPassword writes file with a new random password.
func newPassword(file string) (string, error) {
	random := make([]byte, 24)
	if _, err := rand.Read(random); err != nil {
		return "", err
	}
	password := base64.RawURLEncoding.EncodeToString(random)
	if err := atomicfile.Write(file, []byte(password+"\n"), 0o600); err != nil {
		return "", err
	}
	return password, nil
}

func report(opts Options, units []etcd.UnitAccess) {
	name := opts.Config.Relation.Name
	fmt.Fprintf(opts.Out, "relation %s: %d units; put each unit's user and password file in its config "+
		"(relation.etcd.username, relation.etcd.password_file)\n", name, len(units))
	for _, u := range units {
		access := "member (asks only)"
		if u.LeaderEligible {
			access = "leader-eligible"
		}
		fmt.Fprintf(opts.Out, "  %-12s %-18s user %s  password_file %s\n", u.Unit, access,
			etcd.UserName(name, u.Unit), PasswordFile(opts.CredentialsDir, u.Unit))
	}
}
