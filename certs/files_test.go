package certs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	steps := []struct {
		data        string
		wantChanged bool
	}{
		{"one", true},
		{"one", false},
		{"two", true},
	}
	for _, s := range steps {
		changed, err := writeFileAtomic(path, []byte(s.data), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if changed != s.wantChanged {
			t.Errorf("write %q: changed = %v, want %v", s.data, changed, s.wantChanged)
		}
		if got := string(readFile(t, dir, "f")); got != s.data {
			t.Errorf("content = %q, want %q", got, s.data)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temp files left)", len(entries))
	}
	if _, err := writeFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("write into a missing directory: want error")
	}
}
