package main

import (
	"fmt"
	"io"
	"os"
)

// maxPolicyBytes bounds what Portreeve reads of a policy configuration and of
// the custom rules (each file, and a policy folder in all): a ConfigMap holds
// at most 1 MiB, so anything near the bound is a mistake or an attack, and
// parsing it would cost memory out of proportion. serve --max-policy-bytes
// sets it.
var maxPolicyBytes int64 = 4 << 20

// readPolicyFile reads a configuration or a module, refusing one larger
// than maxPolicyBytes before it reads it: by its size when it is a regular
// file (nothing of it is read), else once it has read one byte more.
func readPolicyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > maxPolicyBytes {
		return nil, tooLarge(path)
	}
	return readBounded(path, f)
}

// readBounded reads r (named name in errors) up to maxPolicyBytes.
func readBounded(name string, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxPolicyBytes {
		return nil, tooLarge(name)
	}
	return b, nil
}

func tooLarge(name string) error {
	return fmt.Errorf("%s: larger than %d bytes, the most Portreeve reads of a policy file (--max-policy-bytes)", name, maxPolicyBytes)
}
