package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// injectCABundle sets caBundle on every webhook of the validating and the
// mutating configuration named r.opts.WebhookConfigName (the validating one
// only with NoMutatingWebhook). It patches only a
// configuration whose bundle differs, with an optimistic lock so that a
// concurrent change (helm upgrade, another replica) is re-read, not undone.
func (r *Rotator) injectCABundle(ctx context.Context, caBundle []byte) error {
	name := r.opts.WebhookConfigName
	validating := func() error {
		return injectInto(ctx, r.client, &admissionregistrationv1.ValidatingWebhookConfiguration{},
			"ValidatingWebhookConfiguration", name,
			func(o *admissionregistrationv1.ValidatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
				out := make([]*admissionregistrationv1.WebhookClientConfig, 0, len(o.Webhooks))
				for i := range o.Webhooks {
					out = append(out, &o.Webhooks[i].ClientConfig)
				}
				return out
			}, caBundle)
	}
	mutating := func() error {
		return injectInto(ctx, r.client, &admissionregistrationv1.MutatingWebhookConfiguration{},
			"MutatingWebhookConfiguration", name,
			func(o *admissionregistrationv1.MutatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
				out := make([]*admissionregistrationv1.WebhookClientConfig, 0, len(o.Webhooks))
				for i := range o.Webhooks {
					out = append(out, &o.Webhooks[i].ClientConfig)
				}
				return out
			}, caBundle)
	}
	if r.opts.NoMutatingWebhook {
		return retry.RetryOnConflict(retry.DefaultRetry, validating)
	}
	return errors.Join(
		retry.RetryOnConflict(retry.DefaultRetry, validating),
		retry.RetryOnConflict(retry.DefaultRetry, mutating),
	)
}

func injectInto[T client.Object](ctx context.Context, c client.Client, obj T, kind, name string,
	clientConfigs func(T) []*admissionregistrationv1.WebhookClientConfig, caBundle []byte) error {
	if err := c.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
		return fmt.Errorf("reading %s %s: %w", kind, name, err)
	}
	orig, ok := obj.DeepCopyObject().(T)
	if !ok {
		return fmt.Errorf("copying %s %s", kind, name)
	}
	changed := false
	for _, cc := range clientConfigs(obj) {
		if !bytes.Equal(cc.CABundle, caBundle) {
			cc.CABundle = caBundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	patch := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
	if err := c.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("patching caBundle of %s %s: %w", kind, name, err)
	}
	logf.FromContext(ctx).Info("Injected CA bundle", "kind", kind, "name", name)
	return nil
}
