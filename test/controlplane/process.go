package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/portreeve/portreeve/test/proc"
)

// process is one child (etcd, kube-apiserver, kube-controller-manager).
type process struct{ *proc.Process }

// launch starts binary with args, its output going to logPath (and, when
// logs is not nil, also to logs with a "[name] " prefix on every line).
// onUnexpectedExit is called from the waiting goroutine if the process exits
// without stop having been called.
func launch(name, binary string, args []string, logPath string, logs io.Writer, onUnexpectedExit func(*process)) (*process, error) {
	p, err := proc.Start(proc.Options{
		Name: name, Binary: binary, Args: args, LogPath: logPath, Logs: logs,
		OnUnexpectedExit: func(p *proc.Process) {
			if onUnexpectedExit != nil {
				onUnexpectedExit(&process{p})
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return &process{p}, nil
}

// exitError describes an unexpected exit, with the tail of the process log.
func (p *process) exitError() error {
	status := "exited"
	if err := p.WaitErr(); err != nil {
		status = err.Error()
	}
	return fmt.Errorf("%s (pid %d) %s%s", p.Name, p.PID(), status, p.LogTail(40))
}

// addrInUse reports whether the process log says a port was taken.
func (p *process) addrInUse() bool {
	data, err := os.ReadFile(p.LogPath)
	return err == nil && bytes.Contains(data, []byte("address already in use"))
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
