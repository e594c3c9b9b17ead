package servingcert

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"
)

// owner is the object the webhook's Secrets belong to: the webhook
// configuration whose caBundle is their CA. It is installed and removed with
// the webhook (helm uninstall, kubectl delete -k), and the garbage collector
// deletes the Secrets after it, which nothing else would: the webhook made
// them at run time, so no install tool knows them (issue #16). A
// cluster-scoped owner of namespaced dependents is allowed; the webhook
// already reads the configuration to keep its caBundle.
type owner struct {
	client kubernetes.Interface
	// kind is MutatingWebhookConfiguration or ValidatingWebhookConfiguration;
	// name "" means no owner: the Secrets stay until deleted by hand.
	kind, name string
}

// errOwnerGone: the owner is configured but does not exist (not yet
// applied, or being uninstalled).
var errOwnerGone = errors.New("not found")

// ownerOf picks the mutating configuration, else the validating one.
func ownerOf(cfg InClusterConfig) owner {
	if cfg.WebhookConfiguration != "" {
		return owner{cfg.Client, "MutatingWebhookConfiguration", cfg.WebhookConfiguration}
	}
	return owner{cfg.Client, "ValidatingWebhookConfiguration", cfg.ValidatingWebhookConfiguration}
}

// ref reads the owner and returns the reference a Secret carries to it; nil
// when no owner is configured, errOwnerGone when it does not exist.
func (o owner) ref(ctx context.Context) (*metav1.OwnerReference, error) {
	if o.name == "" {
		return nil, nil
	}
	var meta *metav1.ObjectMeta
	api := o.client.AdmissionregistrationV1()
	switch o.kind {
	case "MutatingWebhookConfiguration":
		c, err := api.MutatingWebhookConfigurations().Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			return nil, o.wrap(err)
		}
		meta = &c.ObjectMeta
	default:
		c, err := api.ValidatingWebhookConfigurations().Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			return nil, o.wrap(err)
		}
		meta = &c.ObjectMeta
	}
	// No blockOwnerDeletion: nothing needs the owner to wait for the
	// Secrets, and setting it needs update on the owner's finalizers under
	// OwnerReferencesPermissionEnforcement (on in OpenShift).
	return &metav1.OwnerReference{APIVersion: "admissionregistration.k8s.io/v1", Kind: o.kind, Name: o.name, UID: meta.UID}, nil
}

func (o owner) wrap(err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %q %w", o.kind, o.name, errOwnerGone)
	}
	return fmt.Errorf("reading %s %q: %w", o.kind, o.name, err)
}

// withOwner returns refs with ref in it, replacing a reference to an earlier
// object of the same kind and name (the owner deleted and re-created: the
// garbage collector would take the old UID as a missing owner), and reports
// whether it changed anything.
func withOwner(refs []metav1.OwnerReference, ref metav1.OwnerReference) ([]metav1.OwnerReference, bool) {
	group := func(apiVersion string) string { g, _, _ := strings.Cut(apiVersion, "/"); return g }
	out := make([]metav1.OwnerReference, 0, len(refs)+1)
	for _, r := range refs {
		if r.Kind == ref.Kind && r.Name == ref.Name && group(r.APIVersion) == group(ref.APIVersion) {
			if r.UID == ref.UID {
				return refs, false
			}
			continue
		}
		out = append(out, r)
	}
	return append(out, ref), true
}

// adopt adds ref to the owners of the Secret name, if it exists, and
// reports whether it changed it.
func adopt(ctx context.Context, secrets corev1client.SecretInterface, name string, ref metav1.OwnerReference) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.OwnerReferences, changed = withOwner(s.OwnerReferences, ref)
		if !changed {
			return nil
		}
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("owning secret %q by %s %q: %w", name, ref.Kind, ref.Name, err)
	}
	return changed, nil
}
