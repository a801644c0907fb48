package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portreeve/portreeve/test/controlplane"
)

// EnvNodeTests enables the tests that start a node ("1"). They change
// global host state (and undo it), so they run only when asked: with this
// variable, or with $PORTREEVE_REQUIRE_TOOLS (CI, `make test-node`), which
// also turns a skip for something missing into a failure.
const EnvNodeTests = "PORTREEVE_NODE_TESTS"

// Images are the tarballs of the images the tests import.
type Images struct {
	// Portreeve is `make image`'s docker archive.
	Portreeve string
	// Sandbox is `make pause-image`'s docker archive.
	Sandbox string
}

// DefaultImages returns the archives under _output in the repository root
// (hack/image names its archive portreeve.tar in every output folder).
func DefaultImages() (Images, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return Images{}, err
	}
	return Images{
		Portreeve: filepath.Join(root, "_output", "image", "portreeve.tar"),
		Sandbox:   filepath.Join(root, "_output", "pause", "portreeve.tar"),
	}, nil
}

// Required skips the test unless node tests are enabled and everything a
// node needs is there (root, the node binaries, the image archives); with
// $PORTREEVE_REQUIRE_TOOLS set it fails instead. It returns the control
// plane options for a node (controller manager, APIServerFlags) and the
// images.
func Required(t testing.TB) (controlplane.Options, Images) {
	t.Helper()
	opts, imgs, err := Prerequisites()
	if err != nil {
		skipOrFail(t, err)
	}
	return opts, imgs
}

// Prerequisites is Required without a testing.TB (for TestMain).
func Prerequisites() (controlplane.Options, Images, error) {
	cpOpts := controlplane.Options{ControllerManager: true, APIServerFlags: APIServerFlags()}
	if !enabled() {
		return cpOpts, Images{}, fmt.Errorf("node tests change the host (and undo it): set %s=1 or %s=1 to run them", EnvNodeTests, controlplane.EnvRequireTools)
	}
	if os.Geteuid() != 0 {
		return cpOpts, Images{}, fmt.Errorf("node tests need root")
	}
	binDir, err := controlplane.ResolveBinDir("")
	if err != nil {
		return cpOpts, Images{}, err
	}
	cpOpts.BinDir = binDir
	names := []string{controlplane.BinEtcd, controlplane.BinAPIServer, controlplane.BinControllerManager,
		controlplane.BinKubectl, controlplane.BinHelm, BinKubelet, BinKubeScheduler, BinKubeProxy}
	if missing := controlplane.MissingTools(binDir, names...); len(missing) > 0 {
		return cpOpts, Images{}, fmt.Errorf("%w (hack/tools.sh node builds the node binaries)", &controlplane.MissingToolsError{BinDir: binDir, Missing: missing})
	}
	imgs, err := DefaultImages()
	if err != nil {
		return cpOpts, Images{}, err
	}
	for _, p := range []string{imgs.Portreeve, imgs.Sandbox} {
		if _, err := os.Stat(p); err != nil {
			return cpOpts, Images{}, fmt.Errorf("image archive missing: %w (make image pause-image)", err)
		}
	}
	return cpOpts, imgs, nil
}

// Strict reports whether a missing prerequisite fails instead of skipping.
func Strict() bool {
	v := os.Getenv(controlplane.EnvRequireTools)
	return v != "" && v != "0"
}

func enabled() bool {
	v := os.Getenv(EnvNodeTests)
	return Strict() || (v != "" && v != "0")
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if Strict() && enabled() {
		t.Fatalf("node: %v", err)
	}
	t.Skipf("node: %v", err)
}

// StartForTest starts a node for cp and tears it down in t.Cleanup, where
// the host-clean check failing fails the test.
func StartForTest(t testing.TB, cp *controlplane.ControlPlane, opts Options) *Node {
	t.Helper()
	n, err := StartWhenFree(context.Background(), cp, opts, func(err error) { t.Logf("node: waiting: %v", err) })
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Logf("node: %s Ready %.1fs after its start", n.Name, n.StartTook.Seconds())
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("node teardown: %v", err)
			return
		}
		t.Logf("node: torn down in %.1fs; host clean", n.TeardownTook.Seconds())
	})
	return n
}

// StartWhenFree is Start, but while another node stack runs (go test runs
// packages in parallel unless -p 1) it waits for it to end, up to 20
// minutes, calling waiting once.
func StartWhenFree(ctx context.Context, cp *controlplane.ControlPlane, opts Options, waiting func(error)) (*Node, error) {
	deadline := time.Now().Add(20 * time.Minute)
	for {
		n, err := Start(ctx, cp, opts)
		if !errors.Is(err, ErrNodeRunning) || time.Now().After(deadline) {
			return n, err
		}
		if waiting != nil {
			waiting(err)
			waiting = nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(2 * time.Second):
		}
	}
}
