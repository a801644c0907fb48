package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portreeve/portreeve/webhook/inventory"
	"github.com/portreeve/portreeve/webhook/reservations"
	"github.com/portreeve/portreeve/webhook/review"
)

// reservationOptions are the serve flags of the reservations that make
// replicas agree on contested keys (webhook/reservations).
type reservationOptions struct {
	Reservations      bool
	ReservationTTL    time.Duration
	ReservationSettle time.Duration
	// reservationsSet records that --reservations was given explicitly.
	reservationsSet bool
}

func defaultReservationOptions() reservationOptions {
	return reservationOptions{
		Reservations:      true,
		ReservationTTL:    reservations.DefaultTTL,
		ReservationSettle: reservations.DefaultSettle,
	}
}

func (o *reservationOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Reservations, "reservations", o.Reservations, "before admitting a request that claims a hostPort, an explicit nodePort or an Ingress host whose conflict rule enforces, "+
		"reserve it in a coordination.k8s.io Lease in --namespace, so that replicas agree (without --namespace it is off, or an error when given explicitly)")
	fs.DurationVar(&o.ReservationTTL, "reservation-ttl", o.ReservationTTL, "how long a reservation counts when the informers never show its object (a request refused after Portreeve admitted it, a replica that died)")
	fs.DurationVar(&o.ReservationSettle, "reservation-settle", o.ReservationSettle, "how long after a reservation, once the informers show its object, it is dropped (every replica's informers show it by then)")
}

func (o *serveOptions) validateReservations() []error {
	var errs []error
	if o.Reservations && o.reservationsSet && o.Namespace == "" {
		errs = append(errs, errors.New("--reservations needs --namespace (or $POD_NAMESPACE): the Leases live there"))
	}
	if o.ReservationTTL < time.Second {
		errs = append(errs, errors.New("--reservation-ttl must be at least 1s"))
	}
	if o.ReservationSettle <= 0 || o.ReservationSettle >= o.ReservationTTL {
		errs = append(errs, errors.New("--reservation-settle must be positive and shorter than --reservation-ttl"))
	}
	for _, msg := range validation.IsDNS1123Subdomain(o.reservationPrefix() + "-hp-tcp-65535") {
		errs = append(errs, errors.New("reservation Lease names (from --webhook-config-name): "+msg))
	}
	return errs
}

// reservationQPS bounds the reservations' requests per second, far above
// what a replica admits.
const reservationQPS = 1000

// reservationPrefix starts the reservation Leases' names: one set per
// installation, like the audit's Lease.
func (o *serveOptions) reservationPrefix() string {
	if o.WebhookConfigName != "" {
		return o.WebhookConfigName + "-rsv"
	}
	return "portreeve-rsv"
}

// setupReservations makes the reviewer reserve what it admits, and cleans
// the Leases on every replica.
func setupReservations(ctx context.Context, mgr manager.Manager, o *serveOptions, cfg *rest.Config, inv *inventory.Inventory, reviewer *review.Reviewer) (bool, error) {
	if !o.Reservations || o.Namespace == "" {
		return false, nil
	}
	if missing, err := namespaceMissing(ctx, cfg, o.Namespace); err != nil {
		return false, err
	} else if missing {
		// Not running in the cluster as installed (a workstation, a
		// benchmark): there is no namespace to reserve in, nor replicas.
		ctrl.Log.WithName("serve").Info("WARNING: reservations are off: --namespace does not exist in the cluster, so this process cannot agree with other replicas", "namespace", o.Namespace)
		return false, nil
	}
	// Reservations are on the admission path: the apiserver's priority and
	// fairness paces them, not client-go's default 5 requests per second.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = reservationQPS, 2*reservationQPS
	// Leases are a built-in kind: protobuf costs both ends less than JSON.
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	metrics, err := reservations.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return false, err
	}
	store := reservations.New(reservations.Options{
		Leases: client, Namespace: o.Namespace, Prefix: o.reservationPrefix(), Replica: replicaName(),
		TTL: o.ReservationTTL, Settle: o.ReservationSettle, Local: inv, Metrics: metrics,
	})
	reviewer.UseReservations(store)
	return true, mgr.Add(store)
}

// namespaceMissing reports whether the apiserver says the namespace does
// not exist (any other answer counts as existing: the reservations' own
// errors then say what is wrong).
func namespaceMissing(ctx context.Context, cfg *rest.Config, name string) (bool, error) {
	cs, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cs.Namespaces().Get(ctx, name, metav1.GetOptions{})
	return apierrors.IsNotFound(err), nil
}

// replicaName names this process in the reservations it writes: the pod's
// name, and a suffix of its own (a restarted container is another writer).
func replicaName() string {
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	return name + "-" + rand.String(5)
}
