package main

import (
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// version and revision are set at build time with
// -ldflags "-X main.version=... -X main.revision=..." (make build, make image,
// the Dockerfile). Without a revision from the linker, the Go toolchain's own
// VCS stamp (vcs.revision, present when go build ran in a git checkout without
// -buildvcs=false) is used.
var (
	version  = "dev"
	revision = ""
)

// buildInfo is what this binary knows about its own build.
type buildInfo struct {
	Version   string
	Revision  string // "unknown" when neither the linker nor the toolchain recorded one
	GoVersion string
}

// currentBuildInfo reads the version, the revision and the Go version of the
// running binary.
func currentBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	return resolveBuildInfo(version, revision, bi, ok)
}

// resolveBuildInfo: the linker's revision wins; otherwise the toolchain's
// vcs.revision, with "-dirty" when the tree had uncommitted changes.
func resolveBuildInfo(version, revision string, bi *debug.BuildInfo, ok bool) buildInfo {
	out := buildInfo{Version: version, Revision: revision, GoVersion: "unknown"}
	if ok && bi != nil {
		if bi.GoVersion != "" {
			out.GoVersion = bi.GoVersion
		}
		if out.Revision == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" && modified == "true" {
				rev += "-dirty"
			}
			out.Revision = rev
		}
	}
	if out.Revision == "" {
		out.Revision = "unknown"
	}
	return out
}

// newBuildInfoGauge is portreeve_build_info: always 1, the build in its labels,
// so that dashboards and alerts can name the version a replica runs.
func newBuildInfoGauge(b buildInfo) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "portreeve_build_info",
		Help:        "Always 1; the labels name the version, the VCS revision and the Go version of the running binary.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}

// registerBuildInfo registers portreeve_build_info on reg (serve: the manager's registry).
func registerBuildInfo(reg prometheus.Registerer) error {
	return reg.Register(newBuildInfoGauge(currentBuildInfo()))
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the VCS revision and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := currentBuildInfo()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "portreeve %s (revision %s, %s)\n", b.Version, b.Revision, b.GoVersion)
			return err
		},
	}
}
