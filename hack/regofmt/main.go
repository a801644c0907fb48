// Command regofmt formats Rego files in place (opa fmt, Rego v1), without the opa binary.
//
//	go run ./hack/regofmt [-w] DIR...
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
)

func main() {
	write := flag.Bool("w", false, "write the formatted files (default: list the files that need it)")
	flag.Parse()
	status := 0
	for _, dir := range flag.Args() {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Ext(path) != ".rego" {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out, err := format.SourceWithOpts(path, src, format.Opts{RegoVersion: ast.RegoV1})
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if bytes.Equal(src, out) {
				return nil
			}
			if !*write {
				fmt.Println(path)
				status = 1
				return nil
			}
			return os.WriteFile(path, out, 0o644)
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(status)
}
