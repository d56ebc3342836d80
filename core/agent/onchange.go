package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/metrics"
)

// onChange runs certificate.on_change after the unit's files change. Runs never
// overlap and never hold up the protocol: a change while a run is under way asks for
// one more run after it. The outcome of the last run is kept for status.
type onChange struct {
	command string
	timeout time.Duration
	env     []string
	log     hclog.Logger
	poke    func() // the agent looks at its status again
	metrics *metrics.Metrics

	mu      sync.Mutex
	running bool
	again   bool
	closed  bool
	lastErr string
	done    sync.WaitGroup
}

// changed asks for a run.
func (o *onChange) changed() {
	if o == nil || o.command == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
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

func (o *onChange) loop() {
	defer o.done.Done()
	for {
		err := o.run()
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

func (o *onChange) run() error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", o.command)
	cmd.Env = append(os.Environ(), o.env...)
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
	o.log.Info("on_change ran", "command", o.command, "took", time.Since(start).Round(time.Millisecond))
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
