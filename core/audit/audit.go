// Package audit is the leader's record of what the group's CA did: one JSON line per
// event (a certificate signed, a CSR rejected, a CA imported or made, a rotation's
// phase, a revocation, leadership gained or lost) appended to a file and flushed to disk
// before what it records is published, so that every certificate a unit can install
// has its record. It never holds a key: only names, serials, digests and fingerprints.
//
// Several processes may share one file (units of one host, `tlsrelay up`): each append
// holds an flock on it. The file is rotated by size (path.1, path.2, ...).
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The events.
const (
	EventSigned      = "signed"       // a certificate published for a unit
	EventRejected    = "rejected"     // a CSR refused (policy or signer)
	EventCAImported  = "ca_imported"  // the signer took the group's CA (ca.ref or its sealed copy)
	EventCACreated   = "ca_created"   // a new CA made for a rotation
	EventCAPublished = "ca_published" // the group's CA bundle changed
	EventRotation    = "rotation"     // a CA rotation entered a phase, or ended ("done")
	EventRevoked     = "revoked"      // a certificate entered the revocations: its unit departed, or a rotation ended without it
	// EventSignerRefused: a certificate the signer returned that the leader did not
	// publish, as it was not what the policy approved (Reason says how).
	EventSignerRefused = "signer_refused"
	EventLeaderGained  = "leader_gained" // this unit began to lead
	EventLeaderLost    = "leader_lost"   // this unit stopped leading
)

// Event is one record. Fields that do not apply to an event are left out.
type Event struct {
	Time     time.Time `json:"time"`
	Event    string    `json:"event"`
	Relation string    `json:"relation,omitempty"`
	Leader   string    `json:"leader,omitempty"` // the unit that recorded it
	Unit     string    `json:"unit,omitempty"`   // the unit it concerns

	Serial    string    `json:"serial,omitempty"` // hex
	Names     []string  `json:"names,omitempty"`  // DNS, IP and URI SANs
	CSRSHA256 string    `json:"csr_sha256,omitempty"`
	Profile   string    `json:"profile,omitempty"`
	Validity  string    `json:"validity,omitempty"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Signer    string    `json:"signer,omitempty"`
	CASHA256  string    `json:"ca_sha256,omitempty"` // the issuing, imported or published CA

	Rule   string `json:"rule,omitempty"`   // a rejection's rule
	Reason string `json:"reason,omitempty"` // a rejection's or rotation's reason, an import's source

	Phase string `json:"phase,omitempty"` // a rotation's
	From  string `json:"from,omitempty"`  // CA fingerprints of a rotation
	To    string `json:"to,omitempty"`
}

// Default rotation: at this size the file becomes path.1, and this many old files are kept.
const (
	DefaultMaxBytes = 64 << 20
	DefaultKeep     = 5
)

// Log appends events to a file. A nil *Log records nothing (audit is off).
type Log struct {
	path     string
	maxBytes int64
	keep     int
	relation string
	unit     string
	now      func() time.Time
}

// Options configure a Log.
type Options struct {
	Path     string
	MaxBytes int64 // rotate at this size (0: DefaultMaxBytes)
	Keep     int   // old files kept (0: DefaultKeep)
	Relation string
	Unit     string // the recording unit
}

// Open checks that the file can be appended to (creating it and its directory, 0700)
// and returns its Log; nil, nil when opts.Path is empty.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, nil
	}
	l := &Log{path: opts.Path, maxBytes: opts.MaxBytes, keep: opts.Keep, relation: opts.Relation, unit: opts.Unit, now: time.Now}
	if l.maxBytes <= 0 {
		l.maxBytes = DefaultMaxBytes
	}
	if l.keep <= 0 {
		l.keep = DefaultKeep
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
		return nil, fmt.Errorf("audit.path: %w", err)
	}
	f, err := openTrail(l.path)
	if err != nil {
		return nil, fmt.Errorf("audit.path: %w", err)
	}
	return l, f.Close()
}

// Record appends events, stamped with the time, relation and recording unit where they
// have none, in one write flushed to disk; it returns once they are durable.
func (l *Log) Record(events ...Event) error {
	if l == nil || len(events) == 0 {
		return nil
	}
	var b strings.Builder
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = l.now().UTC()
		}
		if e.Relation == "" {
			e.Relation = l.relation
		}
		if e.Leader == "" {
			e.Leader = l.unit
		}
		line, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	f, err := l.openLocked()
	if err != nil {
		return err
	}
	defer f.Close() // closing releases the lock
	if _, err := f.WriteString(b.String()); err != nil {
		return fmt.Errorf("audit: write %s: %w", l.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit: flush %s: %w", l.path, err)
	}
	return l.rotateIfFull(f)
}

// openLocked opens the file for appending, locked, making sure it is still the file at
// path (another process may have rotated it between the open and the lock).
func (l *Log) openLocked() (*os.File, error) {
	for range 10 {
		f, err := openTrail(l.path)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: lock %s: %w", l.path, err)
		}
		held, err1 := f.Stat()
		named, err2 := os.Lstat(l.path)
		if err1 == nil && err2 == nil && os.SameFile(held, named) {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("audit: %s keeps being replaced", l.path)
}

// rotateIfFull renames a full file to path.1 (path.1 to path.2, ...), under its lock.
func (l *Log) rotateIfFull(f *os.File) error {
	info, err := f.Stat()
	if err != nil || info.Size() < l.maxBytes {
		return nil
	}
	os.Remove(rotated(l.path, l.keep))
	for i := l.keep - 1; i >= 1; i-- {
		if err := os.Rename(rotated(l.path, i), rotated(l.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit: rotate: %w", err)
		}
	}
	if err := os.Rename(l.path, rotated(l.path, 1)); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	return syncDir(filepath.Dir(l.path))
}

func rotated(path string, i int) string { return fmt.Sprintf("%s.%d", path, i) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer d.Close()
	return d.Sync()
}
