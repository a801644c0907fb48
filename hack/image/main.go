// Command image builds Portreeve's container image without a Docker engine:
// the same image as the Dockerfile at the repository root (one layer with the
// static binary at /portreeve, user 65532:65532, entrypoint ["/portreeve"]),
// written as an OCI image layout and a docker-archive tarball that crane,
// skopeo or `docker load` take.
//
//	go run . --out ../../_output/image --tag portreeve/portreeve:dev   (make image)
//
// It builds ./cmd/portreeve itself (CGO_ENABLED=0, -trimpath) unless
// --binary names a static binary. The creation time defaults to
// $SOURCE_DATE_EPOCH, else the Unix epoch, so the same source gives the same
// image digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "", "output folder (gets oci/ and portreeve.tar); required")
	tag := fs.String("tag", "portreeve/portreeve:dev", "image reference written into the outputs")
	arch := fs.String("arch", runtime.GOARCH, "target architecture: amd64 or arm64")
	ldflags := fs.String("ldflags", "-s -w", "go build -ldflags for the binary (make image passes the version)")
	binary := fs.String("binary", "", "use this static linux binary instead of building ./cmd/portreeve")
	created := fs.String("created", "", "creation time, RFC 3339 (default $SOURCE_DATE_EPOCH, else 1970-01-01)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	when, err := creationTime(*created)
	if err != nil {
		return err
	}
	bin := *binary
	if bin == "" {
		root, err := RepoRoot(".")
		if err != nil {
			return err
		}
		bin = filepath.Join(*out, "portreeve-linux-"+*arch)
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		if err := BuildBinary(root, bin, *arch, *ldflags); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	img, err := Build(data, Spec{Arch: *arch, Created: when})
	if err != nil {
		return err
	}
	outs, err := Write(img, ref, *out)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image %s (linux/%s) %s\n  OCI layout:     %s\n  docker archive: %s\n", ref, *arch, digest, outs.Layout, outs.Tarball)
	fmt.Printf("push with: crane push %s <registry>/portreeve:<tag>\n", outs.Layout)
	fmt.Printf("       or: skopeo copy oci:%s:%s docker://<registry>/portreeve:<tag>\n", outs.Layout, ref.TagStr())
	return nil
}

// creationTime parses flag (RFC 3339), else $SOURCE_DATE_EPOCH (Unix
// seconds), else returns the Unix epoch.
func creationTime(flag string) (time.Time, error) {
	if flag != "" {
		t, err := time.Parse(time.RFC3339, flag)
		if err != nil {
			return time.Time{}, fmt.Errorf("--created: %w", err)
		}
		return t.UTC(), nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}
