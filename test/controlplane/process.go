package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// process is one child (etcd, kube-apiserver, kube-controller-manager).
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File

	done     chan struct{} // closed once the process has been waited for
	waitErr  error         // valid after done is closed
	stopping atomic.Bool   // set before we signal it, so the exit is expected
}

// launch starts binary with args, its output going to logPath (and, when
// logs is not nil, also to logs with a "[name] " prefix on every line).
// onUnexpectedExit is called from the waiting goroutine if the process exits
// without stop having been called.
func launch(name, binary string, args []string, logPath string, logs io.Writer, onUnexpectedExit func(*process)) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdin = nil
	var out io.Writer = logFile
	if logs != nil {
		out = io.MultiWriter(logFile, &prefixWriter{w: logs, prefix: "[" + name + "] "})
		cmd.WaitDelay = 2 * time.Second
	}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = childSysProcAttr()
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: logFile, done: make(chan struct{})}
	if err := startChild(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
		if !p.stopping.Load() && onUnexpectedExit != nil {
			onUnexpectedExit(p)
		}
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

// stop sends SIGTERM to the process, SIGKILL to its process group after
// stopGrace, and waits until it has been reaped.
func (p *process) stop() error {
	p.stopping.Store(true)
	if p.exited() {
		return nil
	}
	pid := p.pid()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	// The child is its own process group leader (Setpgid), so -pid is its
	// group and nothing else.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pid)
	}
}

// exitError describes an unexpected exit, with the tail of the process log.
func (p *process) exitError() error {
	status := "exited"
	if p.waitErr != nil {
		status = p.waitErr.Error()
	}
	return fmt.Errorf("%s (pid %d) %s%s", p.name, p.pid(), status, p.logTail())
}

// logTail returns the last lines of the process log, formatted for an error.
func (p *process) logTail() string {
	tail := tailFile(p.logPath, 40)
	if tail == "" {
		return ""
	}
	return fmt.Sprintf("\n--- last lines of %s ---\n%s", p.logPath, tail)
}

// addrInUse reports whether the process log says a port was taken.
func (p *process) addrInUse() bool {
	data, err := os.ReadFile(p.logPath)
	return err == nil && bytes.Contains(data, []byte("address already in use"))
}

func tailFile(path string, lines int) string {
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
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// prefixWriter writes every line to w with a prefix. Several processes may
// share one writer, so whole lines are written under a package-wide lock.
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
			break
		}
		line := append([]byte(pw.prefix), pw.buf[:i+1]...)
		pw.buf = pw.buf[i+1:]
		logWriteMu.Lock()
		_, err := pw.w.Write(line)
		logWriteMu.Unlock()
		if err != nil {
			return len(b), nil // never fail the child because of the log sink
		}
	}
	return len(b), nil
}

// flagArgs turns defaults plus overrides into sorted --key=value arguments.
// An override with an empty key is ignored; keys may be given with or
// without leading dashes.
func flagArgs(defaults, overrides map[string]string) []string {
	merged := make(map[string]string, len(defaults)+len(overrides))
	for k, v := range defaults {
		merged[k] = v
	}
	for k, v := range overrides {
		k = strings.TrimLeft(k, "-")
		if k != "" {
			merged[k] = v
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, len(keys))
	for _, k := range keys {
		args = append(args, "--"+k+"="+merged[k])
	}
	return args
}

// errStopped is returned by Start when the control plane was stopped (for
// example by a signal) while it was starting.
var errStopped = errors.New("control plane stopped while starting")
