package controlplane

import (
	"context"
	"os"
	"testing"
)

// EnvRequireTools, when set to anything but "" or "0", turns a skip for
// missing binaries into a test failure (CI sets it).
const EnvRequireTools = "PORTREEVE_REQUIRE_TOOLS"

// RequireTools skips the test when the binaries a control plane with opts
// needs are missing (or fails it if $PORTREEVE_REQUIRE_TOOLS is set), and
// returns the bin dir. Extra names (kubectl, helm) can be required too.
func RequireTools(t testing.TB, opts Options, extra ...string) string {
	t.Helper()
	binDir, err := ResolveBinDir(opts.BinDir)
	if err != nil {
		if toolsRequired() {
			t.Fatalf("control plane: %v", err)
		}
		t.Skipf("control plane: %v; run hack/tools.sh, or set %s=1 to fail instead of skipping", err, EnvRequireTools)
	}
	names := []string{BinEtcd, BinAPIServer}
	if opts.ControllerManager {
		names = append(names, BinControllerManager)
	}
	names = append(names, extra...)
	if missing := MissingTools(binDir, names...); len(missing) > 0 {
		err := &MissingToolsError{BinDir: binDir, Missing: missing}
		if toolsRequired() {
			t.Fatalf("%v; %s is set", err, EnvRequireTools)
		}
		t.Skipf("skipping: %v; set %s=1 to fail instead of skipping", err, EnvRequireTools)
	}
	return binDir
}

func toolsRequired() bool {
	v := os.Getenv(EnvRequireTools)
	return v != "" && v != "0"
}

// StartForTest starts a control plane for a test (skipping it as
// RequireTools does when binaries are missing, plus kubectl) and stops it in
// t.Cleanup. A start failure fails the test.
func StartForTest(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	opts.BinDir = RequireTools(t, opts, BinKubectl)
	cp, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}
