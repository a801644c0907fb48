package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestResolveBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99.1"}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		}
		if modified != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	tests := []struct {
		name              string
		version, revision string
		bi                *debug.BuildInfo
		ok                bool
		want              buildInfo
	}{
		{"the linker's revision wins over the toolchain's", "v1.2.3", "abc123", vcs("def456", "true"), true,
			buildInfo{"v1.2.3", "abc123", "go1.99.1"}},
		{"the toolchain's revision of a clean tree", "dev", "", vcs("def456", "false"), true,
			buildInfo{"dev", "def456", "go1.99.1"}},
		{"the toolchain's revision of a modified tree", "dev", "", vcs("def456", "true"), true,
			buildInfo{"dev", "def456-dirty", "go1.99.1"}},
		{"no revision anywhere (-buildvcs=false, no -X)", "dev", "", vcs("", ""), true,
			buildInfo{"dev", "unknown", "go1.99.1"}},
		{"no build info at all", "dev", "", nil, false,
			buildInfo{"dev", "unknown", "unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveBuildInfo(tc.version, tc.revision, tc.bi, tc.ok); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestVersionCommandPrintsRevision(t *testing.T) {
	defer func(v, r string) { version, revision = v, r }(version, revision)
	version, revision = "v9.8.7", "0123456789abcdef"
	out, code := runCLI(t, "", "version")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if want := "portreeve v9.8.7 (revision 0123456789abcdef, " + runtime.Version() + ")\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	defer func(v, r string) { version, revision = v, r }(version, revision)
	version, revision = "v9.8.7", "0123456789abcdef"
	reg := prometheus.NewPedanticRegistry()
	if err := registerBuildInfo(reg); err != nil {
		t.Fatal(err)
	}
	want := `# HELP portreeve_build_info Always 1; the labels name the version, the VCS revision and the Go version of the running binary.
# TYPE portreeve_build_info gauge
portreeve_build_info{goversion="` + runtime.Version() + `",revision="0123456789abcdef",version="v9.8.7"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "portreeve_build_info"); err != nil {
		t.Error(err)
	}
	// Registered once per registry: a second registration is refused, not duplicated.
	if err := registerBuildInfo(reg); err == nil {
		t.Error("portreeve_build_info registered twice on one registry")
	}
}
