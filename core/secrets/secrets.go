// Package secrets fetches the certificate material a deployment names (Barbican
// containers and secrets, through the secrets backend) and writes it where the service
// that terminates TLS reads it: certificate, key (0600), chain, and an haproxy-style
// bundle (certificate, chain, key; 0600). Writes are atomic and skipped when nothing
// changed; a failed fetch leaves the files of the last good one in place.
package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/sdk"
	"github.com/tlsrelay/tlsrelay/sdk/atomicfile"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// The file names in an output directory.
const (
	CertFile   = "tls.crt"
	KeyFile    = "tls.key"
	ChainFile  = "chain.crt"
	BundleFile = "bundle.pem"
)

// Result describes one fetch.
type Result struct {
	Name     string
	Ref      string
	Subject  string
	NotAfter time.Time
	Written  []string // files whose content changed
	Kept     []string // files already up to date
	Removed  []string // files of an earlier fetch this secret no longer has (chain.crt)
}

// Summary is the one line `tlsrelay fetch` prints.
func (r Result) Summary() string {
	files := append(append([]string{}, r.Written...), r.Kept...)
	wrote := "wrote nothing"
	if len(files) > 0 {
		wrote = fmt.Sprintf("files %v (%d changed)", files, len(r.Written))
	}
	if len(r.Removed) > 0 {
		wrote += fmt.Sprintf("; removed %v (the secret no longer has them)", r.Removed)
	}
	return fmt.Sprintf("%s: subject %q, not after %s, %s", r.Ref, r.Subject, r.NotAfter.UTC().Format(time.RFC3339), wrote)
}

// Fetch fetches one secret with backend and writes it to its outputs.
func Fetch(ctx context.Context, backend sdk.Backend, s config.Secret) (Result, error) {
	secret, err := backend.FetchSecret(ctx, s.Ref)
	if err != nil {
		return Result{}, fmt.Errorf("secret %s: %w", s.Name, err)
	}
	certs, err := certutil.ParseCertificates(secret.CertificatePEM)
	if err != nil {
		return Result{}, fmt.Errorf("secret %s: %s: %w", s.Name, s.Ref, err)
	}
	r := Result{Name: s.Name, Ref: s.Ref, Subject: certs[0].Subject.String(), NotAfter: certs[0].NotAfter}
	if err := write(&r, secret, s.Output); err != nil {
		return r, fmt.Errorf("secret %s: %w", s.Name, err)
	}
	return r, nil
}

// part is one file of the output.
type part struct {
	path string
	data []byte
	mode os.FileMode
}

// parts lays out a secret according to out: a directory's standard names, overridden
// by the paths given one by one.
func parts(secret sdk.Secret, out config.SecretOutput) []part {
	pick := func(explicit, name string) string {
		if explicit != "" || out.Dir == "" {
			return explicit
		}
		return filepath.Join(out.Dir, name)
	}
	bundle := joinPEM(secret.CertificatePEM, secret.IntermediatesPEM, secret.Key)
	all := []part{
		{pick(out.Cert, CertFile), secret.CertificatePEM, 0o644},
		{pick(out.Key, KeyFile), secret.Key, 0o600},
		{pick(out.Chain, ChainFile), secret.IntermediatesPEM, 0o644},
		{pick(out.Bundle, BundleFile), bundle, 0o600},
	}
	var chosen []part
	for _, p := range all {
		if p.path != "" {
			chosen = append(chosen, p) // no data: a file an earlier fetch wrote goes
		}
	}
	return chosen
}

func joinPEM(blocks ...[]byte) []byte {
	var b bytes.Buffer
	for _, block := range blocks {
		if len(block) == 0 {
			continue
		}
		b.Write(block)
		if !bytes.HasSuffix(block, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// write puts each part in place, skipping files that already hold the same bytes (but
// correcting their mode).
func write(r *Result, secret sdk.Secret, out config.SecretOutput) error {
	for _, p := range parts(secret, out) {
		if len(p.data) == 0 { // the secret has none (no intermediates): nor may a stale file
			if err := os.Remove(p.path); err == nil {
				r.Removed = append(r.Removed, p.path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
			return err
		}
		current, err := os.ReadFile(p.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err == nil && bytes.Equal(current, p.data) {
			if err := os.Chmod(p.path, p.mode); err != nil {
				return err
			}
			r.Kept = append(r.Kept, p.path)
			continue
		}
		if err := atomicfile.Write(p.path, p.data, p.mode); err != nil {
			return err
		}
		r.Written = append(r.Written, p.path)
	}
	return nil
}

// Refresher fetches every configured secret now and again every interval.
type Refresher struct {
	Backend  func(ctx context.Context) (sdk.Backend, error)
	Secrets  []config.Secret
	Interval time.Duration
	Log      hclog.Logger
	// OnResult, if set, sees every fetch (tests, status, metrics); the Result names the
	// secret even when the fetch failed.
	OnResult func(Result, error)
}

// Run fetches until ctx ends. A failed fetch is logged and tried again at the next
// round; the files of the last good fetch stay in place.
func (f *Refresher) Run(ctx context.Context) {
	log := f.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	for {
		f.round(ctx, log)
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.Interval):
		}
	}
}

// Once fetches every secret once, as `agent --once` does, and returns an error naming
// each secret that was not written.
func (f *Refresher) Once(ctx context.Context) error {
	log := f.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return f.round(ctx, log)
}

func (f *Refresher) round(ctx context.Context, log hclog.Logger) error {
	var errs []error
	backend, backendErr := f.Backend(ctx)
	for _, s := range f.Secrets {
		var r Result
		err := backendErr
		if err == nil {
			r, err = Fetch(ctx, backend, s)
		}
		r.Name, r.Ref = s.Name, s.Ref // a failed fetch's result names its secret too
		if err != nil {
			log.Error("fetch failed; keeping the files of the last good fetch", "secret", s.Name, "ref", s.Ref,
				"code", sdk.CodeOf(err).String(), "error", err)
			errs = append(errs, fmt.Errorf("secret %s (%s): %w", s.Name, s.Ref, err))
		} else if len(r.Written) > 0 || len(r.Removed) > 0 {
			log.Info("secret written", "secret", s.Name, "files", r.Written, "removed", r.Removed, "not_after", r.NotAfter)
		}
		if f.OnResult != nil {
			f.OnResult(r, err)
		}
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
	}
	return errors.Join(errs...)
}
