package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestPolicyReportsFlag: --policy-reports is off by default, needs the
// audit, and names the reports after the webhook configurations.
func TestPolicyReportsFlag(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		on       bool
		wantName string
		wantErr  string
	}{
		{name: "off by default", wantName: "portreeve"},
		{name: "on", args: []string{"--policy-reports"}, on: true, wantName: "portreeve"},
		{name: "named after the webhook configurations", args: []string{"--policy-reports", "--webhook-config-name=edge"}, on: true, wantName: "edge"},
		{name: "needs the audit", args: []string{"--policy-reports", "--audit-interval=0"}, wantErr: "--policy-reports needs the audit"},
		{name: "off with the audit off is fine", args: []string{"--audit-interval=0"}, wantName: "portreeve"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", "")
			o := newServeOptions()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("validate: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.PolicyReports != tc.on || o.reportName() != tc.wantName {
				t.Errorf("PolicyReports %t, name %q; want %t, %q", o.PolicyReports, o.reportName(), tc.on, tc.wantName)
			}
		})
	}
}
