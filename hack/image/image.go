package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is; the Dockerfile at the repository root builds the same.
const (
	// BinaryPath is where the binary lives in the image; the chart's
	// Deployment runs it as command ["/portreeve"].
	BinaryPath = "/portreeve"
	// User is the numeric user:group the image runs as (distroless'
	// "nonroot"); the chart's securityContext uses the same IDs.
	User = "65532:65532"
	// defaultPath is the PATH Docker sets on images built from scratch.
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// modulePath is the module whose ./cmd/portreeve is built.
	modulePath = "github.com/portreeve/portreeve"
)

// Spec describes the image to build from a binary.
type Spec struct {
	// Arch is the GOARCH of the binary and the image (linux only).
	Arch string
	// Created is the creation time in the config and the mtime in the layer;
	// a fixed value makes the image reproducible.
	Created time.Time
}

// BuildBinary builds ./cmd/portreeve of the module in root as a static
// linux/arch binary at out.
func BuildBinary(root, out, arch, ldflags string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/portreeve")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/portreeve: %w\n%s", err, b)
	}
	return nil
}

// CheckStatic returns an error unless bin is a statically linked Linux ELF
// executable for arch: the image has no libc or dynamic loader.
func CheckStatic(bin []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	want, ok := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if !ok {
		return fmt.Errorf("unsupported architecture %q (amd64 or arm64)", arch)
	}
	if f.Machine != want {
		return fmt.Errorf("binary is for %s, want %s", f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("binary is dynamically linked (has an ELF interpreter); build with CGO_ENABLED=0")
		}
	}
	return nil
}

// Build returns the image: one layer holding bin at /portreeve (root-owned,
// 0755), run as 65532:65532 with entrypoint ["/portreeve"], OCI media
// types. Nothing else is in it: no shell, no libc, no /etc.
func Build(bin []byte, spec Spec) (v1.Image, error) {
	if err := CheckStatic(bin, spec.Arch); err != nil {
		return nil, err
	}
	created := spec.Created.UTC()
	layerTar, err := binaryLayer(bin, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "COPY portreeve " + BinaryPath,
			Comment:   "hack/image",
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = spec.Arch
	cfg.Created = v1.Time{Time: created}
	cfg.Config = v1.Config{
		User:       User,
		Entrypoint: []string{BinaryPath},
		Env:        []string{defaultPath},
		WorkingDir: "/",
	}
	return mutate.ConfigFile(img, cfg)
}

// binaryLayer is the uncompressed tar of the single layer.
func binaryLayer(bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(BinaryPath, "/"),
		Mode:     0o755,
		Uid:      0,
		Gid:      0,
		Size:     int64(len(bin)),
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Outputs are the files Write produces under its folder.
type Outputs struct {
	// Layout is an OCI image layout (skopeo: oci:<Layout>:<tag>; crane push
	// <Layout> <ref>).
	Layout string
	// Tarball is a docker-archive (docker load -i; crane push <Tarball>
	// <ref>; skopeo: docker-archive:<Tarball>).
	Tarball string
}

// Write replaces dir/oci and dir/portreeve.tar with img, tagged ref.
func Write(img v1.Image, ref name.Tag, dir string) (Outputs, error) {
	out := Outputs{Layout: filepath.Join(dir, "oci"), Tarball: filepath.Join(dir, "portreeve.tar")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return out, err
	}
	if err := os.RemoveAll(out.Layout); err != nil {
		return out, err
	}
	p, err := layout.Write(out.Layout, empty.Index)
	if err != nil {
		return out, fmt.Errorf("OCI layout: %w", err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{
		// skopeo finds the image in the layout by it: oci:<dir>:<tag>.
		"org.opencontainers.image.ref.name": ref.TagStr(),
	}))
	if err != nil {
		return out, fmt.Errorf("OCI layout: %w", err)
	}
	tmp := out.Tarball + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return out, fmt.Errorf("docker archive: %w", err)
	}
	return out, os.Rename(tmp, out.Tarball)
}

// RepoRoot walks up from dir to the folder whose go.mod declares the
// portreeve module (this tool's own go.mod is another module).
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modulePathOf(string(b)) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above %s", modulePath, dir)
		}
		dir = parent
	}
}

func modulePathOf(goMod string) string {
	for line := range strings.Lines(goMod) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
