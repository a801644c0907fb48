package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// StateDir holds the lock that makes a node stack the only one on the
// machine, and the record of what the running one changed, so that a stack
// whose process died (a test binary killed on a timeout) is torn down by
// the next Start or by `go run ./test/node/cmd/node-clean`.
const StateDir = "/run/portreeve-node"

// record is what teardown needs to know, written before the first change.
type record struct {
	PID        int       `json:"pid"`
	Dir        string    `json:"dir"`
	Bridge     string    `json:"bridge"`
	HostVeth   string    `json:"hostVeth"`
	Block      string    `json:"block"`
	GuardTable string    `json:"guardTable"`
	Before     *Snapshot `json:"before"`
}

func recordPath() string { return filepath.Join(StateDir, "state.json") }

func (r *record) save() error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := recordPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, recordPath())
}

// loadRecord returns the record of a node stack that was not torn down, or
// nil.
func loadRecord() (*record, error) {
	b, err := os.ReadFile(recordPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", recordPath(), err)
	}
	return &r, nil
}

// hostLock is an exclusive flock on StateDir/lock, held while a node stack
// runs; the kernel drops it when the holder dies.
type hostLock struct{ f *os.File }

// ErrNodeRunning is returned by Start while another node stack runs.
var ErrNodeRunning = errors.New("a node stack is already running on this machine")

func acquireLock() (*hostLock, error) {
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(StateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(f.Name())
		f.Close()
		return nil, fmt.Errorf("%w (lock %s held by pid %s)", ErrNodeRunning, filepath.Join(StateDir, "lock"), strings.TrimSpace(string(b)))
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &hostLock{f: f}, nil
}

// release removes the lock (and StateDir, unless a record is left in it).
func (l *hostLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = os.Remove(l.f.Name())
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	_ = os.Remove(StateDir)
	l.f = nil
}

// foreignNodeProcesses returns running kubelets (any: two cannot share a
// host) and containerds started by this package (their config lives in a
// portreeve-node-* folder), other than those of skipPIDs.
func foreignNodeProcesses(skipPIDs ...int) []string {
	var out []string
	for _, p := range nodeProcesses("") {
		pid, comm, _ := strings.Cut(p, " ")
		n, _ := strconv.Atoi(pid)
		if containsInt(skipPIDs, n) {
			continue
		}
		switch comm {
		case "kubelet":
			out = append(out, p)
		case "containerd", "kube-proxy", "kube-scheduler":
			cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
			if strings.Contains(string(cmdline), dirPrefix) {
				out = append(out, p)
			}
		}
	}
	return out
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
