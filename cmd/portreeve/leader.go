package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// leaderOptions are the serve flags of the audit's leader election: every
// replica serves admission, only the holder of a Lease in --namespace audits.
type leaderOptions struct {
	LeaderElect      bool
	LeaderElectionID string
	LeaseDuration    time.Duration
	RenewDeadline    time.Duration
	RetryPeriod      time.Duration
	// leaderElectSet records that --leader-elect was given explicitly.
	leaderElectSet bool
}

func defaultLeaderOptions() leaderOptions {
	// controller-runtime's defaults.
	return leaderOptions{
		LeaderElect:   true,
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
	}
}

func (o *leaderOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "run the background audit on one replica only, the holder of a coordination.k8s.io Lease in --namespace (every replica serves admission); without --namespace it is off, or an error when given explicitly")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "name of the audit's Lease (default: <--webhook-config-name>-audit, portreeve-audit without it; the chart's Role allows <fullname>-audit)")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration, "how long the other replicas wait after the auditor's last renewal before one of them takes over")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline, "how long the auditor tries to renew its Lease before it gives up; the process then exits and restarts")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod, "how often the Lease is renewed, and tried by the other replicas")
}

// leaseName is the audit's Lease: one per webhook configuration, so two
// installations in one namespace elect an auditor each.
func (o *serveOptions) leaseName() string {
	switch {
	case o.LeaderElectionID != "":
		return o.LeaderElectionID
	case o.WebhookConfigName != "":
		return o.WebhookConfigName + "-audit"
	}
	return "portreeve-audit"
}

func (o *serveOptions) validateLeaderElection() []error {
	var errs []error
	if o.LeaderElect && o.leaderElectSet && o.AuditInterval != 0 && o.Namespace == "" {
		errs = append(errs, errors.New("--leader-elect needs --namespace (or $POD_NAMESPACE): the Lease lives there"))
	}
	for _, msg := range validation.IsDNS1123Subdomain(o.leaseName()) {
		errs = append(errs, fmt.Errorf("--leader-election-id: %s", msg))
	}
	// client-go's leader elector refuses anything else (1.2 is its jitter factor).
	switch {
	case o.RetryPeriod <= 0:
		errs = append(errs, errors.New("--leader-election-retry-period must be positive"))
	case o.RenewDeadline <= o.RetryPeriod*6/5:
		errs = append(errs, errors.New("--leader-election-renew-deadline must be longer than 1.2 times --leader-election-retry-period"))
	case o.LeaseDuration <= o.RenewDeadline:
		errs = append(errs, errors.New("--leader-election-lease-duration must be longer than --leader-election-renew-deadline"))
	}
	return errs
}

// leaderElection reports whether serve elects an auditor, and why not.
func (o *serveOptions) leaderElection() (bool, string) {
	switch {
	case o.AuditInterval == 0:
		return false, "the audit is off (--audit-interval=0)"
	case !o.LeaderElect:
		return false, "--leader-elect=false: every replica audits"
	case o.Namespace == "":
		return false, "no --namespace ($POD_NAMESPACE) to keep the Lease in: every replica audits"
	}
	return true, ""
}

// useLeaderElection makes the manager elect the auditor: runnables that need
// leader election (the audit alone) start once this replica holds the Lease.
// Losing it ends the process (controller-runtime's behaviour); a replica that
// stops releases it, so another takes over at its next retry.
func (o *serveOptions) useLeaderElection(cfg *rest.Config, mo *manager.Options) error {
	lock, err := newAuditLock(cfg, o.Namespace, o.leaseName(), o.RenewDeadline)
	if err != nil {
		return err
	}
	mo.LeaderElection = true
	mo.LeaderElectionID = o.leaseName()
	mo.LeaderElectionNamespace = o.Namespace
	mo.LeaderElectionResourceLockInterface = lock
	mo.LeaderElectionReleaseOnCancel = true
	mo.LeaseDuration = new(o.LeaseDuration)
	mo.RenewDeadline = new(o.RenewDeadline)
	mo.RetryPeriod = new(o.RetryPeriod)
	return nil
}

// newAuditLock is the Lease lock controller-runtime would build, without an
// event recorder: the Lease's holderIdentity, the log and
// portreeve_audit_leader say who audits, and Portreeve needs no right to
// write Events.
func newAuditLock(cfg *rest.Config, namespace, name string, renewDeadline time.Duration) (resourcelock.Interface, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = strings.TrimSpace(cfg.UserAgent + " leader-election")
	// One hung request must not cost the Lease.
	cfg.Timeout = max(renewDeadline/2, time.Second)
	client, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	return &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
		Client:     client,
		LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())},
	}, nil
}

// everyReplica runs a runnable on every replica, leader or not (a runnable
// that does not say so would wait for the Lease).
type everyReplica struct{ manager.Runnable }

func (everyReplica) NeedLeaderElection() bool { return false }
