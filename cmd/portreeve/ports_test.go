package main

import (
	"strings"
	"testing"
)

// TestPortsFlags: bad flags are refused, all at once, before the cluster is
// read (the command itself is tested against a real apiserver in test/e2e).
func TestPortsFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"output", []string{"-o", "xml"}, []string{`-o must be one of table, json, yaml, got "xml"`}},
		{"port and range", []string{"--port", "http", "--node-port-range", "30000"},
			[]string{"--port: ", "--node-port-range: "}},
		{"two configurations", []string{"--config", "a.yaml", "--config-map", "portreeve/config"},
			[]string{"--config and --config-map name two configurations"}},
		{"config map without a namespace", []string{"--config-map", "config"}, []string{`--config-map "config": want NAMESPACE/NAME`}},
		{"no kubeconfig", []string{"--kubeconfig", "/dev/null/none"}, []string{"kubeconfig: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runSplit(t, "", append([]string{"ports"}, tc.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr)
			}
			for _, w := range tc.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
		})
	}
}
