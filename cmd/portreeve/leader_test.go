package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portreeve/portreeve/certs"
	"github.com/portreeve/portreeve/webhook/audit"
	"github.com/portreeve/portreeve/webhook/inventory"
)

func TestLeaderElectionOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string // $POD_NAMESPACE
		wantErr string // "" means valid
		elect   bool
		why     string
		lease   string // when elect; default portreeve-audit
	}{
		{name: "defaults in a pod", env: "portreeve-system", elect: true},
		{name: "--namespace", args: []string{"--namespace=portreeve"}, elect: true},
		{name: "the chart: named after the webhook configurations", env: "edge-system",
			args: []string{"--webhook-config-name=edge"}, elect: true, lease: "edge-audit"},
		{name: "named explicitly", args: []string{"--namespace=p", "--webhook-config-name=edge", "--leader-election-id=audit"}, elect: true, lease: "audit"},
		{name: "no namespace: off, said so", why: "no --namespace"},
		{name: "explicit --leader-elect without namespace", args: []string{"--leader-elect"}, wantErr: "--leader-elect needs --namespace"},
		{name: "switched off", args: []string{"--namespace=p", "--leader-elect=false"}, why: "every replica audits"},
		{name: "no audit, no election", args: []string{"--namespace=p", "--audit-interval=0"}, why: "the audit is off"},
		{name: "no audit, no namespace needed", args: []string{"--leader-elect", "--audit-interval=0"}, why: "the audit is off"},
		{name: "short durations", args: []string{"--namespace=p", "--leader-election-lease-duration=4s",
			"--leader-election-renew-deadline=3s", "--leader-election-retry-period=1s"}, elect: true},
		{name: "lease not longer than renew", args: []string{"--leader-election-lease-duration=10s"},
			wantErr: "--leader-election-lease-duration must be longer"},
		{name: "renew within the retry's jitter", args: []string{"--leader-election-renew-deadline=2400ms"},
			wantErr: "--leader-election-renew-deadline must be longer than 1.2 times"},
		{name: "no retry period", args: []string{"--leader-election-retry-period=0s"}, wantErr: "retry-period must be positive"},
		{name: "bad Lease name", args: []string{"--leader-election-id=Audit_Lease"}, wantErr: "--leader-election-id"},
		{name: "bad Lease name from the configurations", args: []string{"--webhook-config-name=" + strings.Repeat("x", 250)}, wantErr: "--leader-election-id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.env)
			o := newServeOptions()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			o.leaderElectSet = fs.Changed("leader-elect")
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
			elect, why := o.leaderElection()
			if elect != tc.elect || !strings.Contains(why, tc.why) {
				t.Errorf("leaderElection() = %t %q, want %t %q", elect, why, tc.elect, tc.why)
			}
			if !elect {
				return
			}
			var mo manager.Options
			if err := o.useLeaderElection(&rest.Config{Host: "https://127.0.0.1:6443", UserAgent: "portreeve/test"}, &mo); err != nil {
				t.Fatal(err)
			}
			lease := tc.lease
			if lease == "" {
				lease = "portreeve-audit"
			}
			lock, ok := mo.LeaderElectionResourceLockInterface.(*resourcelock.LeaseLock)
			switch {
			case !mo.LeaderElection || !mo.LeaderElectionReleaseOnCancel || !ok || mo.LeaderElectionID != lease:
				t.Errorf("manager options %+v", mo)
			case lock.LeaseMeta.Namespace != o.Namespace || lock.LeaseMeta.Name != lease || lock.LockConfig.EventRecorder != nil:
				t.Errorf("lock %+v: want the Lease %s in %s, no event recorder", lock, lease, o.Namespace)
			case *mo.LeaseDuration != o.LeaseDuration || *mo.RenewDeadline != o.RenewDeadline || *mo.RetryPeriod != o.RetryPeriod:
				t.Errorf("durations %v %v %v", *mo.LeaseDuration, *mo.RenewDeadline, *mo.RetryPeriod)
			}
		})
	}
}

// TestOnlyTheAuditNeedsTheLease: what serves admission (the webhook server,
// the inventory's informers, the configuration watcher, the certificate
// rotator) runs on every replica; only the audit waits for the Lease. A
// runnable that does not implement NeedLeaderElection would wait for it too.
func TestOnlyTheAuditNeedsTheLease(t *testing.T) {
	tests := []struct {
		name string
		r    manager.Runnable
		want bool
	}{
		{"webhook server", newWebhookServer(webhook.Options{}, defaultWebhookTimeouts()), false},
		{"inventory", inventory.New(inventory.Options{}), false},
		{"configuration watcher", everyReplica{&configWatcher{}}, false},
		{"certificate rotator", &certs.Rotator{}, false},
		{"audit", &audit.Loop{}, true},
	}
	for _, tc := range tests {
		le, ok := tc.r.(manager.LeaderElectionRunnable)
		if !ok {
			t.Errorf("%s: does not say whether it needs the Lease (so it does)", tc.name)
			continue
		}
		if got := le.NeedLeaderElection(); got != tc.want {
			t.Errorf("%s: NeedLeaderElection() = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func TestLeaderFlagDefaults(t *testing.T) {
	o := newServeOptions()
	if !o.LeaderElect || o.leaseName() != "portreeve-audit" || o.LeaseDuration != 15*time.Second ||
		o.RenewDeadline != 10*time.Second || o.RetryPeriod != 2*time.Second {
		t.Errorf("defaults %+v", o.leaderOptions)
	}
}
