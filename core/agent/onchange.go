package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/metrics"
)

// onChange runs certificate.on_change after the unit's files change, once the whole
// set a service needs is in place (complete): a CRL or CA that arrives before the unit's
// first certificate waits for it, and is named with it. Runs never overlap and never hold
// up the protocol: a change while a run is under way asks for one more run after it. The
// agent writes the unit's files only between runs (hold), so that a run never sees a key
// and a certificate that do not belong together: an install waits out a run under way,
// bounded by its timeout.
// Each run's environment names the files changed since the last run (ChangedEnv). The
// outcome of the last run is kept for status.
type onChange struct {
	command  string
	timeout  time.Duration
	env      []string
	log      hclog.Logger
	poke     func()      // the agent looks at its status again
	complete func() bool // the unit's files are all in place
	metrics  *metrics.Metrics

	mu      sync.Mutex
	running bool
	again   bool
	closed  bool
	lastErr string
	pending map[string]bool // files changed since the last run
	done    sync.WaitGroup
	files   sync.RWMutex // a run reads the unit's files (read); the agent writes them (hold)
}

// ChangedEnv is the variable that names, space-separated, the files in the output
// directory that changed since on_change last ran (tls.crt, tls.key, ca.crt, ca.crl and
// the formats' files).
const ChangedEnv = "TLSRELAY_CHANGED"

// changed records that files changed and asks for a run.
func (o *onChange) changed(names ...string) {
	if o == nil || o.command == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if o.pending == nil {
		o.pending = map[string]bool{}
	}
	for _, n := range names {
		o.pending[n] = true
	}
	if len(o.pending) == 0 { // nothing changed: nothing to run
		return
	}
	if o.running {
		o.again = true
		return
	}
	o.running = true
	o.done.Add(1)
	go o.loop()
}

// close waits for a run under way (bounded by the timeout) and starts no more: the
// agent is leaving, and a reload must not find an old run still going.
func (o *onChange) close() {
	if o == nil {
		return
	}
	o.mu.Lock()
	o.closed, o.again = true, false
	o.mu.Unlock()
	o.done.Wait()
}

// hold keeps runs from starting, and waits for one under way, while the agent writes the
// unit's files; it returns the release.
func (o *onChange) hold() (release func()) {
	if o == nil || o.command == "" {
		return func() {}
	}
	o.files.Lock()
	return o.files.Unlock
}

func (o *onChange) loop() {
	defer o.done.Done()
	for {
		o.files.RLock()
		o.mu.Lock()
		if o.complete != nil && !o.complete() {
			o.running, o.again = false, false // the next change, when the set is whole, runs it
			o.mu.Unlock()
			o.files.RUnlock()
			return
		}
		changed := slices.Sorted(maps.Keys(o.pending))
		o.pending = nil
		o.mu.Unlock()
		err := o.run(changed)
		o.files.RUnlock()
		o.mu.Lock()
		o.lastErr = ""
		if err != nil {
			o.lastErr = err.Error()
		}
		again := o.again && !o.closed
		o.again, o.running = false, again
		o.mu.Unlock()
		o.poke()
		if !again {
			return
		}
	}
}

func (o *onChange) run(changed []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", o.command)
	cmd.Env = append(append(os.Environ(), o.env...), ChangedEnv+"="+strings.Join(changed, " "))
	cmd.WaitDelay = time.Second // a child holding the output cannot keep us waiting
	start := time.Now()
	out, err := cmd.CombinedOutput()
	result := "ok"
	switch {
	case ctx.Err() != nil:
		result, err = "timeout", fmt.Errorf("%q did not finish within %s", o.command, o.timeout)
	case err != nil:
		result, err = "failed", fmt.Errorf("%q failed (%v): %s", o.command, err, lastLine(out))
	}
	o.metrics.OnChangeRan(result)
	if err != nil {
		o.log.Error("on_change failed; the new files are in place, the service may not have picked them up", "error", err)
		return err
	}
	o.log.Info("on_change ran", "command", o.command, "changed", strings.Join(changed, " "), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// status is the last run's failure, or "".
func (o *onChange) status() string {
	if o == nil {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastErr
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
