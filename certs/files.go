package certs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Names of the files written into CertDir; tls.crt and tls.key are what
// controller-runtime's webhook server reads by default.
const (
	CertFileName   = "tls.crt"
	KeyFileName    = "tls.key"
	CACertFileName = "ca.crt"
)

// writeFileAtomic replaces path with data unless it already holds exactly
// data. It writes a temporary file in the same directory and renames it, so
// a reader (the webhook server's certwatcher) sees either the old or the new
// content, never a partial one. It reports whether the file changed.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (bool, error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return false, err
	}
	tmpName := tmp.Name()
	defer func() {
		// Harmless after a successful rename: the name no longer exists.
		_ = os.Remove(tmpName)
	}()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmpName, path); err != nil {
		return false, err
	}
	return true, nil
}

// writeCertFiles writes the serving key, the serving certificate and the CA
// bundle into dir, each only if it changed. The key goes first: the webhook
// server reloads on either file, and a key that does not match the old
// certificate is rejected by it until the matching certificate arrives.
func writeCertFiles(dir string, b Bundle) (bool, error) {
	files := []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{KeyFileName, b.TLSKey, 0o600},
		{CertFileName, b.TLSCert, 0o644},
		{CACertFileName, b.CACerts, 0o644},
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return false, fmt.Errorf("creating cert dir: %w", err)
	}
	changed := false
	for _, f := range files {
		c, err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.perm)
		if err != nil {
			return changed, fmt.Errorf("writing %s: %w", f.name, err)
		}
		changed = changed || c
	}
	return changed, nil
}

// readServedFiles returns the serving certificate and key currently in dir,
// nil when missing.
func readServedFiles(dir string) (cert, key []byte) {
	cert, _ = os.ReadFile(filepath.Join(dir, CertFileName))
	key, _ = os.ReadFile(filepath.Join(dir, KeyFileName))
	return cert, key
}
