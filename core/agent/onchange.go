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

	mu      sync.Mutex
	running bool
	again   bool
	lastErr string
}

// changed asks for a run.
func (o *onChange) changed() {
	if o == nil || o.command == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running {
		o.again = true
		return
	}
	o.running = true
	go o.loop()
}

func (o *onChange) loop() {
	for {
		err := o.run()
		o.mu.Lock()
		o.lastErr = ""
		if err != nil {
			o.lastErr = err.Error()
		}
		again := o.again
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
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("%q did not finish within %s", o.command, o.timeout)
	case err != nil:
		err = fmt.Errorf("%q failed (%v): %s", o.command, err, lastLine(out))
	}
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
