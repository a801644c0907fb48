package node

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/portreeve/portreeve/test/proc"
)

// stopGrace is how long a daemon (containerd, kubelet, kube-proxy,
// kube-scheduler) gets between SIGTERM and SIGKILL. Daemons run through
// test/proc: each in its own process group and killed with the test binary,
// so what a killed run leaves behind is only swept by the next Start (see
// recover).
const stopGrace = 10 * time.Second

// unexpectedExit returns an error with the log tail if p ended without Stop.
func unexpectedExit(p *proc.Process) error {
	if !p.ExitedUnexpectedly() {
		return nil
	}
	return fmt.Errorf("%s exited: %v%s", p.Name, p.WaitErr(), p.LogTail(30))
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
