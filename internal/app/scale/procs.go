package scale

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/relation/embedded"
	"github.com/tlsrelay/tlsrelay/internal/proctree"
	"go.uber.org/zap"
)

// process is one child of the benchmark, in a process group of its own (with its
// plugins), killed with it by pid when the run ends.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// kill sends SIGKILL to the process's group: the process and its plugins, at once, as
// a host that dies.
func (p *process) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// usage is what a process and its descendants used: CPU seconds, and the sum of their
// resident sets now and at their peaks.
type usage struct {
	CPU          time.Duration
	RSS, PeakRSS int64 // bytes
	Processes    int
	OwnPeak      int64
}

func (u usage) String() string {
	return fmt.Sprintf("%d processes, cpu %.1f s, rss %s, peak rss %s", u.Processes, u.CPU.Seconds(), mib(u.RSS), mib(u.PeakRSS))
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// usageOf reads /proc for pid and every process below it.
func usageOf(pid int) usage {
	var u usage
	for _, p := range proctree.Descendants(pid) {
		rss, peak := proctree.Memory(p.PID)
		u.CPU += p.CPU
		u.RSS += rss
		u.PeakRSS += peak
		u.Processes++
		if p.Depth == 0 {
			u.OwnPeak = peak
		}
	}
	return u
}

// freePort asks the kernel for a free port on loopback.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Embedded, as Options.Etcd, runs the etcd tlsrelay embeds (core/relation/embedded) in
// a child process: this binary again, with ServeEtcd DIR URL as its arguments.
const (
	Embedded  = "embedded"
	ServeEtcd = "serve-embedded-etcd"
)

// ServeEmbedded serves the embedded etcd in dir at url until ctx ends.
func ServeEmbedded(ctx context.Context, dir, url string) error {
	srv, err := embedded.Start(embedded.Options{Dir: dir, ClientURL: url, QuotaBytes: 8 << 30})
	if err != nil {
		return err
	}
	defer srv.Close()
	<-ctx.Done()
	return nil
}

// startEtcd runs the etcd binary (Debian's etcd-server) as a member of its own, data in
// dir, on loopback: a real etcd in a process of its own, so that its CPU and memory are
// counted apart from the units' and the leader's.
func startEtcd(ctx context.Context, bin, dir string) (*process, string, error) {
	var err error
	for range 3 { // a port found free may be taken before etcd binds it
		var p *process
		var endpoint string
		if p, endpoint, err = startEtcdOnce(ctx, bin, dir); err == nil {
			return p, endpoint, nil
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "etcd.log")); !bytes.Contains(b, []byte("address already in use")) {
			return nil, "", err
		}
	}
	return nil, "", err
}

func startEtcdOnce(ctx context.Context, bin, dir string) (*process, string, error) {
	client, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peer, err := freePort()
	if err != nil {
		return nil, "", err
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", client)
	args := []string{"--name", "scale", "--data-dir", filepath.Join(dir, "etcd"),
		"--name", "scale", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("scale=http://127.0.0.1:%d", peer),
		"--quota-backend-bytes", strconv.FormatInt(8<<30, 10),
		"--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m",
		"--log-level", "warn"}
	if bin == Embedded {
		self, err := os.Executable()
		if err != nil {
			return nil, "", err
		}
		bin, args = self, []string{ServeEtcd, filepath.Join(dir, "etcd"), endpoint}
	}
	p, err := start("etcd", filepath.Join(dir, "etcd.log"), nil, bin, args...)
	if err != nil {
		return nil, "", err
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		p.kill()
		return nil, "", err
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Status(sctx, endpoint)
		cancel()
		if err == nil {
			return p, endpoint, nil
		}
		select {
		case <-p.done:
			return nil, "", fmt.Errorf("etcd exited at start; see %s", filepath.Join(dir, "etcd.log"))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.kill()
			return nil, "", fmt.Errorf("etcd at %s not ready: %v", endpoint, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
