package controlplane

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// childSysProcAttr puts each child in its own process group (so a terminal's
// Ctrl-C reaches only the test binary, whose handler then stops the children
// in order) and asks the kernel to SIGKILL the child if its parent dies, so
// nothing outlives a test binary that is killed outright.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Pdeathsig fires when the *thread* that forked the child exits, not the
// process. Go may end an OS thread (when a goroutine exits while locked to
// it), so children are forked from one goroutine locked to a thread that
// lives for the rest of the process.
type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnRequest
)

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
