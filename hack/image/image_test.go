package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestImage builds the image as `make image` does, reads both outputs back
// and checks what the chart relies on: one layer holding only the static
// binary at the path the Deployment runs, a non-root numeric user that
// matches the chart's securityContext, and nothing else.
func TestImage(t *testing.T) {
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	binPath := filepath.Join(dir, "portreeve-bin")
	if err := BuildBinary(root, binPath, runtime.GOARCH, "-s -w -X main.version=image-test -X main.revision=0123456789abcdef0123456789abcdef01234567"); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Arch: runtime.GOARCH, Created: time.Unix(0, 0)}
	img, err := Build(bin, spec)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag("example.com/portreeve/portreeve:v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	outs, err := Write(img, ref, filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	want := mustDigest(t, img)

	t.Run("oci-layout", func(t *testing.T) {
		ii, err := layout.ImageIndexFromPath(outs.Layout)
		if err != nil {
			t.Fatal(err)
		}
		im, err := ii.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != 1 {
			t.Fatalf("index has %d manifests, want 1", len(im.Manifests))
		}
		desc := im.Manifests[0]
		if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != "v0.0.0-test" {
			t.Errorf("ref.name annotation = %q, want v0.0.0-test (skopeo oci:<dir>:<tag>)", got)
		}
		if desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest media type = %s, want %s", desc.MediaType, types.OCIManifestSchema1)
		}
		got, err := ii.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if d := mustDigest(t, got); d != want {
			t.Errorf("layout image digest %s, built %s", d, want)
		}
		checkImage(t, got, bin)
	})

	t.Run("docker-archive", func(t *testing.T) {
		got, err := tarball.ImageFromPath(outs.Tarball, &ref)
		if err != nil {
			t.Fatal(err)
		}
		// The archive carries the same config; the manifest is rebuilt
		// from it by readers, so compare the config, not the digest.
		wantCfg, _ := img.ConfigName()
		if gotCfg, err := got.ConfigName(); err != nil || gotCfg != wantCfg {
			t.Errorf("archive config %s (%v), want %s", gotCfg, err, wantCfg)
		}
		checkImage(t, got, bin)
	})

	t.Run("pushable", func(t *testing.T) {
		// What crane push does, against an in-process registry: push the
		// image read from the layout, pull it back by tag.
		reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer reg.Close()
		pushed, err := name.NewTag(strings.TrimPrefix(reg.URL, "http://") + "/portreeve/portreeve:v0.0.0-test")
		if err != nil {
			t.Fatal(err)
		}
		p, err := layout.FromPath(outs.Layout)
		if err != nil {
			t.Fatal(err)
		}
		local, err := p.Image(want)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(pushed, local); err != nil {
			t.Fatalf("push: %v", err)
		}
		pulled, err := remote.Image(pushed)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if d := mustDigest(t, pulled); d != want {
			t.Errorf("pulled digest %s, pushed %s", d, want)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		again, err := Build(bin, spec)
		if err != nil {
			t.Fatal(err)
		}
		if d := mustDigest(t, again); d != want {
			t.Errorf("second build of the same binary: digest %s, first %s", d, want)
		}
	})

	t.Run("chart-expects-it", func(t *testing.T) {
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		deployment := readFile(t, filepath.Join(root, "charts/portreeve/templates/deployment.yaml"))
		m := regexp.MustCompile(`(?m)^\s*command:\s*(\[.*\])\s*$`).FindStringSubmatch(deployment)
		if m == nil {
			t.Fatal("no command: [...] in the chart's deployment.yaml")
		}
		var command []string
		if err := json.Unmarshal([]byte(m[1]), &command); err != nil {
			t.Fatalf("chart command %s: %v", m[1], err)
		}
		if !slices.Equal(command, cfg.Config.Entrypoint) {
			t.Errorf("chart runs %q, image entrypoint is %q", command, cfg.Config.Entrypoint)
		}
		uid, gid := splitUser(t, cfg.Config.User)
		values := readFile(t, filepath.Join(root, "charts/portreeve/values.yaml"))
		for _, key := range []string{"runAsUser", "runAsGroup"} {
			ids := regexp.MustCompile(`(?m)^\s*`+key+`:\s*(\d+)\s*$`).FindAllStringSubmatch(values, -1)
			if len(ids) == 0 {
				t.Errorf("values.yaml sets no %s", key)
			}
			for _, id := range ids {
				want := uid
				if key == "runAsGroup" {
					want = gid
				}
				if id[1] != strconv.Itoa(want) {
					t.Errorf("values.yaml %s: %s, image user is %s", key, id[1], cfg.Config.User)
				}
			}
		}
	})

	t.Run("dockerfile-builds-the-same", func(t *testing.T) {
		final := finalStage(readFile(t, filepath.Join(root, "Dockerfile")))
		for _, want := range []string{
			"FROM scratch",
			"COPY --from=build --chmod=0755 /out/portreeve " + BinaryPath,
			"USER " + User,
			`ENTRYPOINT ["` + BinaryPath + `"]`,
		} {
			if !slices.Contains(final, want) {
				t.Errorf("Dockerfile's final stage lacks %q; it has %q", want, final)
			}
		}
		if len(final) != 4 {
			t.Errorf("Dockerfile's final stage has %d instructions, want exactly 4 (the image holds nothing else): %q", len(final), final)
		}
	})

	t.Run("binary-runs", func(t *testing.T) {
		// The extracted binary, not the one on disk: what the image holds runs.
		files := layerFiles(t, img)
		path := filepath.Join(t.TempDir(), "portreeve")
		if err := os.WriteFile(path, files["portreeve"].data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(path, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("portreeve version: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "image-test") {
			t.Errorf("portreeve version printed %q, want the version built in", out)
		}
		// hack/image builds with -buildvcs=false: the revision comes from the linker (make image passes it).
		if !strings.Contains(string(out), "revision 0123456789abcdef0123456789abcdef01234567") {
			t.Errorf("portreeve version printed %q, want the revision built in", out)
		}
	})
}

func TestBuildRejectsDynamicBinary(t *testing.T) {
	// The test binary is an ELF for this machine: refused for the other
	// architecture, and for this one too when cgo linked it dynamically.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if other == "" {
		t.Skipf("no other architecture to check against on %s", runtime.GOARCH)
	}
	if _, err := Build(bin, Spec{Arch: other}); err == nil {
		t.Errorf("Build accepted a %s binary for %s", runtime.GOARCH, other)
	}
	if f, err := elf.NewFile(bytes.NewReader(bin)); err == nil && slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		if _, err := Build(bin, Spec{Arch: runtime.GOARCH}); err == nil {
			t.Error("Build accepted a dynamically linked binary")
		}
	}
	if _, err := Build([]byte("#!/bin/sh\n"), Spec{Arch: runtime.GOARCH}); err == nil {
		t.Error("Build accepted a shell script")
	}
}

// checkImage asserts the image's layout and config.
func checkImage(t *testing.T, img v1.Image, bin []byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(layers))
	}
	if mt, err := layers[0].MediaType(); err != nil || (mt != types.OCILayer && mt != types.DockerLayer) {
		t.Errorf("layer media type %s (%v), want a gzip tar layer", mt, err)
	}
	files := layerFiles(t, img)
	if len(files) != 1 {
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		t.Errorf("layer holds %q, want only portreeve", names)
	}
	f, ok := files["portreeve"]
	if !ok {
		t.Fatal("layer has no portreeve")
	}
	if f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode != 0o755 || f.hdr.Uid != 0 || f.hdr.Gid != 0 {
		t.Errorf("portreeve: type %c mode %o owner %d:%d, want a regular file 0755 owned by 0:0 (not writable by the user)",
			f.hdr.Typeflag, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid)
	}
	if !bytes.Equal(f.data, bin) {
		t.Error("the binary in the layer differs from the built one")
	}
	if err := CheckStatic(f.data, runtime.GOARCH); err != nil {
		t.Error(err)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	c := cfg.Config
	if uid, gid := splitUser(t, c.User); uid == 0 || gid == 0 {
		t.Errorf("user %q runs as root", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{BinaryPath}) {
		t.Errorf("entrypoint %q, want [%s]", c.Entrypoint, BinaryPath)
	}
	if len(c.Cmd) != 0 || len(c.ExposedPorts) != 0 || len(c.Volumes) != 0 || len(c.Labels) != 0 {
		t.Errorf("config has more than user and entrypoint: cmd %q ports %v volumes %v labels %v",
			c.Cmd, c.ExposedPorts, c.Volumes, c.Labels)
	}
	if !slices.Equal(c.Env, []string{defaultPath}) {
		t.Errorf("env %q, want only Docker's default PATH", c.Env)
	}
	if n := len(cfg.RootFS.DiffIDs); n != 1 {
		t.Errorf("rootfs has %d diff IDs, want 1", n)
	}
}

type file struct {
	hdr  *tar.Header
	data []byte
}

func layerFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]file{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(hdr.Name, "./")] = file{hdr: hdr, data: data}
		}
		rc.Close()
	}
	return files
}

func splitUser(t *testing.T, user string) (uid, gid int) {
	t.Helper()
	u, g, ok := strings.Cut(user, ":")
	var err1, err2 error
	uid, err1 = strconv.Atoi(u)
	gid, err2 = strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("user %q is not numeric uid:gid (runAsNonRoot needs a numeric user)", user)
	}
	return uid, gid
}

// finalStage returns the instructions after the Dockerfile's last FROM,
// comments and blank lines dropped, the FROM included.
func finalStage(dockerfile string) []string {
	var stage []string
	for line := range strings.Lines(dockerfile) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stage = nil
		}
		stage = append(stage, line)
	}
	return stage
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
