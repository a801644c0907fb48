package node

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ImageRef returns the first tag in a docker-archive tarball (what `make
// image` writes), normalized as containerd stores it
// (portreeve/portreeve:v1 becomes docker.io/portreeve/portreeve:v1).
func ImageRef(tarball string) (string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s: no manifest.json (not a docker archive)", tarball)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", tarball, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			return "", fmt.Errorf("%s: manifest.json: %w", tarball, err)
		}
		if len(m) == 0 || len(m[0].RepoTags) == 0 {
			return "", fmt.Errorf("%s: the image has no tag", tarball)
		}
		return NormalizeRef(m[0].RepoTags[0]), nil
	}
}

// NormalizeRef adds docker.io (and library/) the way containerd's CRI
// names images.
func NormalizeRef(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return ref
	}
	if !found {
		ref = "library/" + ref
	}
	return "docker.io/" + ref
}

// importImages loads docker-archive tarballs into containerd's k8s.io
// namespace, where the CRI (and so the kubelet) finds them.
func (n *Node) importImages(ctx context.Context, tarballs []string) error {
	for _, t := range tarballs {
		if _, err := n.Ctr(ctx, "images", "import", t); err != nil {
			return fmt.Errorf("import %s: %w", t, err)
		}
	}
	return nil
}

// Ctr runs containerd's ctr against the node's containerd (namespace k8s.io).
func (n *Node) Ctr(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "ctr", append([]string{"--address", n.ContainerdSocket, "--namespace", "k8s.io"}, args...)...)
}
