package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Packages are the Debian packages a node needs: the container runtime,
// the CNI plugins (bridge, host-local, portmap, loopback in /usr/lib/cni),
// and the packet filter tools kube-proxy and the host-clean check use.
var Packages = []string{"containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "nftables"}

// CNIBinDir is where Debian's containernetworking-plugins puts the plugins.
const CNIBinDir = "/usr/lib/cni"

var installMu sync.Mutex

// EnsurePackages installs the missing Packages with apt-get (running
// apt-get update once first when a package has no install candidate). It
// does nothing when all are installed.
func EnsurePackages(ctx context.Context) error {
	installMu.Lock()
	defer installMu.Unlock()
	missing := missingPackages(ctx)
	if len(missing) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("packages %s are missing and there is no apt-get: install them by hand", strings.Join(missing, ", "))
	}
	if !haveCandidates(ctx, missing) {
		if _, err := aptGet(ctx, "update", "-qq"); err != nil {
			return err
		}
	}
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
	if _, err := aptGet(ctx, args...); err != nil {
		return err
	}
	if still := missingPackages(ctx); len(still) > 0 {
		return fmt.Errorf("packages still missing after apt-get install: %s", strings.Join(still, ", "))
	}
	return nil
}

func missingPackages(ctx context.Context) []string {
	var missing []string
	for _, p := range Packages {
		out, err := run(ctx, "dpkg-query", "-W", "-f=${Status}", p)
		if err != nil || !strings.Contains(out, "install ok installed") {
			missing = append(missing, p)
		}
	}
	return missing
}

func haveCandidates(ctx context.Context, pkgs []string) bool {
	out, err := run(ctx, "apt-cache", append([]string{"policy"}, pkgs...)...)
	if err != nil {
		return false
	}
	return strings.Count(out, "Candidate:") == len(pkgs) && !strings.Contains(out, "Candidate: (none)")
}

func aptGet(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	// Never start services from maintainer scripts: the node runs its own.
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "RUNLEVEL=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
