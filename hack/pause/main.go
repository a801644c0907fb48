// Command pause is the sandbox ("pause") image of the in-cluster tests: the
// process that holds a pod's namespaces. It sleeps until SIGTERM or SIGINT
// and exits 0, and reaps children that end up with it as their parent (a
// pod that shares its PID namespace). Static, stdlib only; `make pause-image`
// wraps it into an image with hack/image, the code path of `make image`.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap waits for every child that has exited, without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
