package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// TestPolicyFilesAreBounded: a configuration, a module or a policy folder
// larger than --max-policy-bytes is refused before it is parsed, at start and
// on reload, where the last good set keeps serving.
func TestPolicyFilesAreBounded(t *testing.T) {
	defer func(old int64) { maxPolicyBytes = old }(maxPolicyBytes)
	maxPolicyBytes = 4096
	const tooBig = "--max-policy-bytes"
	dir := t.TempDir()
	good := configHead + "grants: [{name: a, namespaces: [a], hostPorts: [\"80\"]}]\n"
	// Padded with a comment: valid YAML, so only its size is at fault.
	huge := good + "# " + strings.Repeat("x", 5000) + "\n"

	tests := []struct {
		name    string
		config  string
		modules map[string]string
		want    string // "" when it loads
	}{
		{"a configuration within the bound", good, nil, ""},
		{"a configuration over the bound", huge, nil, "config.yaml: larger than 4096 bytes"},
		{"a module over the bound", good, map[string]string{"big.rego": "package portreeve.rules.big\n# " + strings.Repeat("x", 5000) + "\n"}, "big.rego: larger than 4096 bytes"},
		{"modules over the bound in all", good, map[string]string{
			"a.rego": "package portreeve.rules.a\n# " + strings.Repeat("x", 3000) + "\n",
			"b.rego": "package portreeve.rules.b\n# " + strings.Repeat("x", 3000) + "\n",
		}, "larger than 4096 bytes in all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub := t.TempDir()
			path := writeFile(t, sub, "config.yaml", tc.config)
			for name, src := range tc.modules {
				writeFile(t, sub, name, src)
			}
			policyDir := ""
			if tc.modules != nil {
				policyDir = sub
			}
			_, err := loadPolicySet(path, policyDir)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tooBig)):
				t.Fatalf("error %v, want %q and the flag named", err, tc.want)
			}
			if _, stderr, code := runValidate(t, "", "-f", path, "--policy-dir", policyDir); tc.want != "" && (code != 2 || !strings.Contains(stderr, tc.want)) {
				t.Errorf("config validate: exit %d, stderr %s", code, stderr)
			}
		})
	}

	// On reload: the oversized file is refused, the last good configuration serves, the pod stays ready.
	path := writeFile(t, dir, "config.yaml", good)
	w, r, engine := startWatcher(t, path, "")
	writeFile(t, dir, "config.yaml", huge)
	w.check(t.Context())
	if r.Engine() != engine {
		t.Fatal("an oversized configuration replaced the engine")
	}
	if v := testutil.ToFloat64(w.configOK); v != 0 {
		t.Errorf("portreeve_config_last_reload_successful = %v after an oversized file", v)
	}
	get := readyz(map[string]healthz.Checker{"config": w.ReadyCheck})
	if code := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz answers %d after an oversized file: the pod must stay ready", code)
	}
}
