package backend

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/tlsrelay/tlsrelay/sdk/pluginhost"
)

// pipeGrace is how long after a plugin process exits its stdout and stderr are read
// before they are closed: long enough for its last log lines, short enough that a child
// it left holding the pipes cannot hang the host.
const pipeGrace = time.Second

// processRunner runs one plugin process for go-plugin, with what go-plugin's own runner
// lacks:
//   - a session of its own: no controlling terminal, so nothing in it can prompt
//     (openssl asking for a pass phrase), and a process group killed as a whole;
//   - stdin from /dev/null;
//   - a parent-death signal: a host killed with -9 leaves no plugin behind;
//   - stdout and stderr closed pipeGrace after the process exits, so go-plugin's readers
//     end even when a child of the plugin keeps them open;
//   - optionally, the binary kept open (the file whose checksum was verified), so the
//     file executed is the file checked.
type processRunner struct {
	cmd    *exec.Cmd
	binary *os.File // closed when the process ends; nil for the tlsrelay binary
	log    hclog.Logger
	tail   *pluginhost.Tail // the last lines of stderr (and a panic), for the log when the plugin dies
	killed atomic.Bool

	stdout, stderr *os.File // read ends
	exited         chan struct{}
	waitErr        error
	closeOnce      sync.Once
}

var _ runner.Runner = (*processRunner)(nil)

func newProcessRunner(cmd *exec.Cmd, binary *os.File, log hclog.Logger) *processRunner {
	return &processRunner{cmd: cmd, binary: binary, log: log, tail: &pluginhost.Tail{Max: tailLines}, exited: make(chan struct{})}
}

// Start implements runner.Runner.
func (r *processRunner) Start(context.Context) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	r.cmd.Stdin = nil // /dev/null
	r.cmd.Stdout, r.cmd.Stderr = outW, errW
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	err = r.cmd.Start()
	outW.Close() // the child holds its own copies
	errW.Close()
	for _, f := range r.cmd.ExtraFiles {
		f.Close() // handed to the child (its TLS identity): the parent's copy goes
	}
	if err != nil {
		outR.Close()
		errR.Close()
		r.closeBinary()
		return fmt.Errorf("start %s: %w", r.Name(), err)
	}
	r.stdout, r.stderr = outR, errR
	go r.reap()
	return nil
}

// reap waits for the process, kills what is left of its group, and closes the pipes
// after pipeGrace.
func (r *processRunner) reap() {
	r.waitErr = r.cmd.Wait()
	if pid := r.cmd.Process.Pid; pid > 0 { // never -0: that is our own group
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	r.closeBinary()
	close(r.exited)
	time.AfterFunc(pipeGrace, func() {
		r.closePipes()
		if r.waitErr != nil && !r.killed.Load() {
			// It died on its own (a panic, a signal): what it last said, where the
			// operator looks, whatever the log level.
			r.log.Error("plugin died", "pid", r.ID(), "error", r.waitErr, "last_stderr", r.tail.String())
		}
	})
}

func (r *processRunner) closePipes() {
	r.closeOnce.Do(func() {
		r.stdout.Close()
		r.stderr.Close()
	})
}

func (r *processRunner) closeBinary() {
	if r.binary != nil {
		r.binary.Close()
	}
}

// Wait implements runner.Runner.
func (r *processRunner) Wait(ctx context.Context) error {
	select {
	case <-r.exited:
		return r.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill implements runner.Runner: SIGKILL to the whole process group. The reaper closes
// the pipes once the process is gone.
func (r *processRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	r.killed.Store(true)
	pid := r.cmd.Process.Pid
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return r.cmd.Process.Kill()
	}
	return nil
}

// Stdout implements runner.Runner.
func (r *processRunner) Stdout() io.ReadCloser { return r.stdout }

// Stderr implements runner.Runner: what go-plugin reads is also kept in tail.
func (r *processRunner) Stderr() io.ReadCloser {
	return struct {
		io.Reader
		io.Closer
	}{io.TeeReader(r.stderr, r.tail), r.stderr}
}

// tailLines is how many of a plugin's last stderr lines are kept.
const tailLines = 20

// Name implements runner.Runner: the command as configured (not /proc/.../fd/N).
func (r *processRunner) Name() string { return r.cmd.Args[0] }

// ID implements runner.Runner: the pid.
func (r *processRunner) ID() string {
	if r.cmd.Process == nil {
		return ""
	}
	return strconv.Itoa(r.cmd.Process.Pid)
}

// Diagnose implements runner.Runner.
func (r *processRunner) Diagnose(context.Context) string {
	select {
	case <-r.exited:
		return fmt.Sprintf("%s exited: %v", r.Name(), r.waitErr)
	default:
		return ""
	}
}

// PluginToHost implements runner.Runner: the plugin runs on this host.
func (r *processRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

// HostToPlugin implements runner.Runner.
func (r *processRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
