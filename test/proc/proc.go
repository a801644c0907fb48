// Package proc runs the long-lived child processes of the test harness (etcd,
// kube-apiserver, kubelet, containerd, ...): each in its own process group,
// killed by the kernel when the test binary dies, stopped with SIGTERM then
// SIGKILL, with its output in a log file (and optionally a shared writer).
package proc

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options describe a child.
type Options struct {
	Name   string
	Binary string
	Args   []string
	// Env is added to the test binary's environment; nil inherits it.
	Env []string
	// LogPath receives stdout and stderr; AppendLog keeps what it holds.
	LogPath   string
	AppendLog bool
	// Logs, when set, also receives every line prefixed with "[Name] ".
	Logs io.Writer
	// StopGrace is the time between SIGTERM and SIGKILL (default 5s).
	StopGrace time.Duration
	// OnUnexpectedExit is called from the waiting goroutine when the child
	// exits without Stop having been called.
	OnUnexpectedExit func(*Process)
}

// Process is a running (or ended) child.
type Process struct {
	Name    string
	LogPath string

	cmd      *exec.Cmd
	grace    time.Duration
	done     chan struct{} // closed once the process has been waited for
	waitErr  error         // valid after done is closed
	stopping atomic.Bool   // set before it is signalled, so the exit is expected
}

// Start starts the child.
func Start(o Options) (*Process, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if o.AppendLog {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logFile, err := os.OpenFile(o.LogPath, flags, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Binary, o.Args...)
	if o.Env != nil {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	var out io.Writer = logFile
	if o.Logs != nil {
		out = io.MultiWriter(logFile, &PrefixWriter{W: o.Logs, Prefix: "[" + o.Name + "] "})
		cmd.WaitDelay = 2 * time.Second
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group (a terminal's Ctrl-C reaches only the test
	// binary, which stops the children in order), and SIGKILL from the
	// kernel if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Process{Name: o.Name, LogPath: o.LogPath, cmd: cmd, grace: o.StopGrace, done: make(chan struct{})}
	if p.grace == 0 {
		p.grace = 5 * time.Second
	}
	if err := startChild(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", o.Name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
		if !p.stopping.Load() && o.OnUnexpectedExit != nil {
			o.OnUnexpectedExit(p)
		}
	}()
	return p, nil
}

// Args are the command line (Args()[0] is the binary).
func (p *Process) Args() []string { return p.cmd.Args }

// PID is the child's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitErr is the child's exit status; valid once Exited.
func (p *Process) WaitErr() error { return p.waitErr }

// Expect marks the coming exit as expected (OnUnexpectedExit is not called)
// without signalling the child yet.
func (p *Process) Expect() { p.stopping.Store(true) }

// Stopped reports whether Stop (or Expect) has been called.
func (p *Process) Stopped() bool { return p.stopping.Load() }

// ExitedUnexpectedly reports whether the child ended without Stop.
func (p *Process) ExitedUnexpectedly() bool { return p.Exited() && !p.Stopped() }

// Stop sends SIGTERM, then SIGKILL to the process group after the grace
// period, and waits until the child has been reaped. Safe to call twice.
func (p *Process) Stop() error {
	p.stopping.Store(true)
	if p.Exited() {
		return nil
	}
	pid := p.PID()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(p.grace):
	}
	// The child leads its own process group, so -pid is its group and nothing else.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, pid)
	}
}

// LogTail returns the last lines of the child's log, formatted for an error
// ("" when the log is empty).
func (p *Process) LogTail(lines int) string {
	tail := TailFile(p.LogPath, lines)
	if tail == "" {
		return ""
	}
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", p.LogPath, tail)
}

// TailFile returns the last lines of a file (reading at most its last 32 KiB).
func TailFile(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxBytes = 32 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxBytes {
		if _, err := f.Seek(st.Size()-maxBytes, io.SeekStart); err != nil {
			return ""
		}
	}
	data, err := io.ReadAll(f)
	if err != nil || len(data) == 0 {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// Pdeathsig fires when the *thread* that forked the child exits, not the
// process. Go may end an OS thread (when a goroutine exits while locked to
// it), so children are forked from one goroutine locked to a thread that
// lives for the rest of the process.
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
			runtime.LockOSThread() // never unlocked: this thread must not exit
			for req := range spawnCh {
				req.result <- req.cmd.Start()
			}
		}()
	})
	result := make(chan error, 1)
	spawnCh <- spawnRequest{cmd: cmd, result: result}
	return <-result
}

// PrefixWriter writes every whole line to W with a prefix. Several children
// may share one writer, so lines are written under a package-wide lock, and
// a failing sink never fails the child.
type PrefixWriter struct {
	W      io.Writer
	Prefix string
	buf    []byte
}

var writeMu sync.Mutex

func (pw *PrefixWriter) Write(b []byte) (int, error) {
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := append([]byte(pw.Prefix), pw.buf[:i+1]...)
		pw.buf = pw.buf[i+1:]
		writeMu.Lock()
		_, _ = pw.W.Write(line)
		writeMu.Unlock()
	}
}
