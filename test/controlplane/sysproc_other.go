//go:build unix && !linux

package controlplane

import (
	"os/exec"
	"syscall"
)

// childSysProcAttr puts each child in its own process group. There is no
// parent-death signal outside Linux; the signal handler and Stop clean up.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func startChild(cmd *exec.Cmd) error { return cmd.Start() }
