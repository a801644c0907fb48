package certs

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Keys of the Secret that stores the Bundle.
const (
	SecretCACertKey  = "ca.crt"
	SecretCAKeyKey   = "ca.key"
	SecretTLSCertKey = corev1.TLSCertKey
	SecretTLSKeyKey  = corev1.TLSPrivateKeyKey
)

// maxStoreAttempts bounds the read-plan-write cycles of one sync when other
// replicas keep winning the race.
const maxStoreAttempts = 5

func bundleFromSecret(s *corev1.Secret) Bundle {
	return Bundle{
		CACerts: s.Data[SecretCACertKey],
		CAKey:   s.Data[SecretCAKeyKey],
		TLSCert: s.Data[SecretTLSCertKey],
		TLSKey:  s.Data[SecretTLSKeyKey],
	}
}

func putBundle(s *corev1.Secret, b Bundle) {
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[SecretCACertKey] = b.CACerts
	s.Data[SecretCAKeyKey] = b.CAKey
	s.Data[SecretTLSCertKey] = b.TLSCert
	s.Data[SecretTLSKeyKey] = b.TLSKey
}

// syncSecret makes the Secret hold a bundle that Plan accepts at now and
// returns it. It is a read-modify-write guarded by resourceVersion: when
// another replica wrote in between (Conflict, AlreadyExists), it reads again
// and plans on what that replica wrote, so a valid certificate written by
// someone else is reused, never replaced.
func (r *Rotator) syncSecret(ctx context.Context, now time.Time) (Bundle, error) {
	log := logf.FromContext(ctx)
	key := client.ObjectKey{Namespace: r.opts.Namespace, Name: r.opts.SecretName}
	for range maxStoreAttempts {
		secret := &corev1.Secret{}
		exists := true
		if err := r.client.Get(ctx, key, secret); err != nil {
			if !apierrors.IsNotFound(err) {
				return Bundle{}, fmt.Errorf("reading Secret %s: %w", key, err)
			}
			exists = false
		}
		current := bundleFromSecret(secret)
		decision := Plan(current, r.policy, now)
		if decision.Action == ActionNone {
			return current, nil
		}
		next, err := Apply(current, decision.Action, r.policy, now)
		if err != nil {
			return Bundle{}, fmt.Errorf("%s: %w", decision.Action, err)
		}
		if exists {
			putBundle(secret, next)
			err = r.client.Update(ctx, secret)
		} else {
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
				Type:       corev1.SecretTypeOpaque,
			}
			putBundle(secret, next)
			err = r.client.Create(ctx, secret)
		}
		switch {
		case err == nil:
			log.Info("Updated webhook certificate Secret",
				"action", string(decision.Action), "reason", decision.Reason)
			return next, nil
		case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
			log.V(1).Info("Secret changed by another replica, re-reading")
			continue
		default:
			return Bundle{}, fmt.Errorf("writing Secret %s: %w", key, err)
		}
	}
	return Bundle{}, fmt.Errorf("secret %s: still conflicting after %d attempts", key, maxStoreAttempts)
}
