package policies

import (
	"embed"
	"io/fs"
	"path"
	"strings"
)

// builtin holds the shipped Rego: the entry points, the helper library and the rules.
//
//go:embed main.rego main_test.rego lib/*.rego rules/*.rego
var builtin embed.FS

// BuiltinModules returns the shipped Rego modules (tests excluded), keyed by file name.
func BuiltinModules() (map[string]string, error) {
	return readModules(builtin, false)
}

// BuiltinTestModules returns the shipped Rego unit tests, keyed by file name.
func BuiltinTestModules() (map[string]string, error) {
	return readModules(builtin, true)
}

func readModules(fsys fs.FS, tests bool) (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		if strings.HasSuffix(p, "_test.rego") != tests {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		out["policies/"+p] = string(b)
		return nil
	})
	return out, err
}
