package up

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tlsrelay/tlsrelay/core/fault"

	"github.com/tlsrelay/tlsrelay/core/protocol"
)

// processGroup is the agent processes of one `up`. Each runs in its own process group
// with a parent-death signal, so none outlives `up`, even one killed with -9.
type processGroup struct {
	self   string
	logDir string

	mu    sync.Mutex
	procs []*agentProcess
}

type agentProcess struct {
	unit string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start launches `tlsrelay agent` for unit; onExit hears of an agent that stops early.
func (g *processGroup) start(unit, configFile, logLevel string, env []string, onExit func(string, error), extraArgs ...string) error {
	if err := os.MkdirAll(g.logDir, 0o700); err != nil {
		return fmt.Errorf("agent logs: %w", err)
	}
	logPath := filepath.Join(g.logDir, protocol.UnitDNSName(unit)+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("agent log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	args := []string{"agent", "--log-level", logLevel}
	if configFile != "" {
		args = append(args, "--config", configFile)
	}
	cmd := exec.Command(g.self, append(args, extraArgs...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent for %s: %w", unit, err)
	}
	p := &agentProcess{unit: unit, cmd: cmd, log: logPath, done: make(chan struct{})}
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		if !g.stopping() {
			err := fmt.Errorf("%s: agent exited (%v); last lines of %s:\n%s", unit, p.err, p.log, tail(p.log, 5))
			if cmd.ProcessState.ExitCode() == fault.ExitPermanent {
				err = fault.Permanent(err)
			}
			onExit(unit, err)
		}
	}()
	return nil
}

func (g *processGroup) stopping() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.procs == nil
}

// stop asks every agent to leave (SIGTERM), waits, and kills the ones that do not.
func (g *processGroup) stop() {
	g.mu.Lock()
	procs := g.procs
	g.procs = nil
	g.mu.Unlock()
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(10 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		// Plugins of the agent run in the agent's process group: none may linger.
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(bytes.TrimSpace(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
