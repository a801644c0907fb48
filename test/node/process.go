package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one long-running child (containerd, kubelet, kube-proxy,
// kube-scheduler). Each runs in its own process group and gets SIGKILL when
// the thread that started it ends, so a test binary that is killed outright
// takes its node daemons with it (what they leave behind is swept by the
// next Start, see recover).
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	mu      sync.Mutex
	stopped bool
}

// stopGrace is how long a daemon gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

func launch(name, binary string, args, env []string, logPath string, logs io.Writer) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out io.Writer = f
	if logs != nil {
		out = io.MultiWriter(f, &prefixWriter{w: logs, prefix: "[" + name + "] "})
		cmd.WaitDelay = 2 * time.Second
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if err := startChild(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL to the process group after stopGrace,
// and waits until the process has been reaped. Safe to call twice.
func (p *process) stop() error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	if p.exited() {
		return nil
	}
	_ = syscall.Kill(p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid())
	}
}

// unexpectedExit returns an error with the log tail if the process ended
// without stop.
func (p *process) unexpectedExit() error {
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped || !p.exited() {
		return nil
	}
	return fmt.Errorf("%s exited: %v%s", p.name, p.waitErr, logTail(p.logPath, 30))
}

// logTail returns the last lines of a log file, formatted for an error.
func logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 32<<10 {
		b = b[len(b)-32<<10:]
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", path, strings.Join(all, "\n"))
}

// Pdeathsig fires when the thread that forked the child ends, so children
// are forked from one goroutine locked to a thread that never ends.
var (
	spawnOnce sync.Once
	spawnCh   chan spawnRequest
)

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func startChild(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread must not end
			for req := range spawnCh {
				req.result <- req.cmd.Start()
			}
		}()
	})
	result := make(chan error, 1)
	spawnCh <- spawnRequest{cmd: cmd, result: result}
	return <-result
}

// prefixWriter copies whole lines to w, each with a prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

var logWriteMu sync.Mutex

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := append([]byte(pw.prefix), pw.buf[:i+1]...)
		pw.buf = pw.buf[i+1:]
		logWriteMu.Lock()
		_, _ = pw.w.Write(line)
		logWriteMu.Unlock()
	}
}

// run runs a short command and returns its standard output; the error
// carries the standard error.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}
