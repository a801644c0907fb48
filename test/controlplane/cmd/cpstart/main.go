// Command cpstart runs a loopback Kubernetes control plane for shell scripts
// until SIGINT or SIGTERM, then stops it and exits 0.
//
//	cpstart [--controller-manager] [--kubeconfig-out FILE] [--bin-dir DIR] [--log-dir DIR]
//
// Once the apiserver is ready it writes the kubeconfig path (one line) to
// --kubeconfig-out (atomically, so a script can poll for the file) and prints
// KUBECONFIG=<path> on stdout. The file is removed again on exit. If a
// component dies, cpstart stops the rest and exits 1 with its log tail.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		kcm        = flag.Bool("controller-manager", false, "also run kube-controller-manager")
		kubeOut    = flag.String("kubeconfig-out", "", "write the kubeconfig path to this file once ready")
		binDir     = flag.String("bin-dir", "", "folder with the binaries (default $PORTREEVE_BIN_DIR or hack/tools.sh bindir)")
		logDir     = flag.String("log-dir", "", "keep the process logs in this folder")
		startLimit = flag.Duration("start-timeout", 2*time.Minute, "give up starting after this long")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cpstart: unexpected arguments: %v\n", flag.Args())
		return 2
	}

	// Catch the signals before starting, so an early Ctrl-C still cleans up.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel() // abort a start in progress
		case <-ctx.Done():
		}
	}()

	cp, err := controlplane.Start(ctx, controlplane.Options{
		BinDir:               *binDir,
		ControllerManager:    *kcm,
		LogDir:               *logDir,
		StartTimeout:         *startLimit,
		DisableSignalHandler: true,
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return 0 // interrupted while starting; Start cleaned up
		}
		fmt.Fprintf(os.Stderr, "cpstart: %v\n", err)
		return 1
	}

	if *kubeOut != "" {
		if err := writeAtomic(*kubeOut, cp.KubeconfigPath+"\n"); err != nil {
			fmt.Fprintf(os.Stderr, "cpstart: %v\n", err)
			_ = cp.Stop()
			return 1
		}
		defer os.Remove(*kubeOut)
	}
	fmt.Printf("KUBECONFIG=%s\n", cp.KubeconfigPath)

	code := 0
	select {
	case <-ctx.Done(): // signal
	case err := <-cp.Failed():
		fmt.Fprintf(os.Stderr, "cpstart: %v\n", err)
		code = 1
	}
	if err := cp.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "cpstart: stop: %v\n", err)
		code = 1
	}
	return code
}

func writeAtomic(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cpstart-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
