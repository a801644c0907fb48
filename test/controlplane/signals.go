package controlplane

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// While at least one control plane (started without DisableSignalHandler)
// runs, SIGINT and SIGTERM are caught: every running control plane is
// stopped, the handler is removed and the signal is sent again, so the
// process then ends the way it would have without us (or the program's own
// handler sees it). Once the last control plane stops, the signals are
// released.
var signals struct {
	mu   sync.Mutex
	live map[*ControlPlane]struct{}
	ch   chan os.Signal
	quit chan struct{}
}

func register(cp *ControlPlane) {
	signals.mu.Lock()
	defer signals.mu.Unlock()
	if signals.live == nil {
		signals.live = map[*ControlPlane]struct{}{}
	}
	if len(signals.live) == 0 {
		signals.ch = make(chan os.Signal, 1)
		signals.quit = make(chan struct{})
		signal.Notify(signals.ch, os.Interrupt, syscall.SIGTERM)
		go handleSignals(signals.ch, signals.quit)
	}
	signals.live[cp] = struct{}{}
}

func unregister(cp *ControlPlane) {
	signals.mu.Lock()
	defer signals.mu.Unlock()
	if _, ok := signals.live[cp]; !ok {
		return
	}
	delete(signals.live, cp)
	if len(signals.live) == 0 {
		signal.Stop(signals.ch)
		close(signals.quit)
		signals.ch, signals.quit = nil, nil
	}
}

func handleSignals(ch chan os.Signal, quit chan struct{}) {
	select {
	case <-quit:
		return
	case sig := <-ch:
		signals.mu.Lock()
		live := make([]*ControlPlane, 0, len(signals.live))
		for cp := range signals.live {
			live = append(live, cp)
		}
		signals.mu.Unlock()

		var wg sync.WaitGroup
		for _, cp := range live {
			wg.Add(1)
			go func(cp *ControlPlane) {
				defer wg.Done()
				_ = cp.Stop() // unregisters; the last one releases the signals
			}(cp)
		}
		wg.Wait()
		signal.Stop(ch)
		if s, ok := sig.(syscall.Signal); ok {
			_ = syscall.Kill(os.Getpid(), s)
		}
	}
}
