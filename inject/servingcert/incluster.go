package servingcert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"
)

// InClusterConfig configures InCluster. Every field says what its zero
// value does.
type InClusterConfig struct {
	// Client talks to the API server. Required.
	Client kubernetes.Interface
	// Namespace of the two Secrets (the webhook's own). Required.
	Namespace string
	// CASecret holds the CA (kubernetes.io/tls, PKCS#8 key). Zero:
	// "mcpguard-webhook-ca".
	CASecret string
	// StorageSecret holds certmagic's assets and locks. Zero:
	// "mcpguard-webhook-certs".
	StorageSecret string
	// DNSNames of the serving certificate, e.g.
	// mcpguard-webhook.mcpguard.svc. Required; IP addresses are allowed.
	DNSNames []string
	// WebhookConfiguration is the MutatingWebhookConfiguration whose
	// caBundle is kept equal to the CA. Zero: none is patched.
	WebhookConfiguration string
	// ValidatingWebhookConfiguration is the ValidatingWebhookConfiguration
	// (policy ConfigMaps, inject/policycheck) whose caBundle is kept equal to
	// the CA. Zero: none is patched.
	ValidatingWebhookConfiguration string
	// Lifetime of a serving certificate; certmagic renews it with a third
	// left. Zero: 7 days.
	Lifetime time.Duration
	// RenewCheckInterval is how often certmagic checks for renewal. Zero:
	// certmagic's default (10m).
	RenewCheckInterval time.Duration
	// BundleInterval is how often the caBundle is checked, which undoes a
	// GitOps tool re-applying the configuration without it. Zero: 30s.
	BundleInterval time.Duration
	// Logger; nil discards.
	Logger *zap.Logger
}

// InCluster loads or creates the CA, obtains (or loads from storage) the
// serving certificate and returns a Manager whose Run keeps the CA Secret,
// the certificate and the webhook configurations' caBundle in agreement.
//
// The two Secrets are owned by the MutatingWebhookConfiguration
// WebhookConfiguration (or, without one, the
// ValidatingWebhookConfiguration), so that the garbage collector deletes
// them when an uninstall deletes it. A Secret of an earlier version, made
// without an owner, gets one. When the configuration does not exist yet (a
// GitOps tool applies it after the Deployment), the Secrets are created
// without an owner and Run adds it once the configuration appears.
func InCluster(ctx context.Context, cfg InClusterConfig) (*Manager, error) {
	if cfg.Client == nil || cfg.Namespace == "" || len(cfg.DNSNames) == 0 {
		return nil, errors.New("servingcert: InCluster needs a client, a namespace and at least one DNS name")
	}
	if cfg.CASecret == "" {
		cfg.CASecret = "mcpguard-webhook-ca"
	}
	if cfg.StorageSecret == "" {
		cfg.StorageSecret = "mcpguard-webhook-certs"
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 7 * 24 * time.Hour
	}
	if cfg.BundleInterval <= 0 {
		cfg.BundleInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	k := &keeper{cfg: cfg, log: cfg.Logger, secrets: cfg.Client.CoreV1().Secrets(cfg.Namespace), owner: ownerOf(cfg)}
	k.storage = &SecretStorage{Secrets: k.secrets, Name: cfg.StorageSecret, Owners: k.owners}
	ref, err := k.owner.ref(ctx)
	if err != nil {
		k.log.Info("the webhook's secrets get their owner once it can be read", zap.Error(err))
	}
	if k.ca, err = LoadOrCreateCA(ctx, k.secrets, cfg.CASecret, refs(ref)); err != nil {
		return nil, err
	}
	s, err := k.serve(ctx, k.ca)
	if err != nil {
		return nil, err
	}
	k.m = newManager(cfg.Logger, s)
	if ref != nil {
		k.own(ctx, *ref)
	}
	k.started.Store(true)
	k.m.run = k.run
	return k.m, nil
}

// keeper is InCluster's state. Once InCluster returns, only Run's
// goroutine touches ca.
type keeper struct {
	cfg     InClusterConfig
	log     *zap.Logger
	secrets corev1client.SecretInterface
	storage *SecretStorage
	owner   owner
	m       *Manager
	ca      *CA         // the CA the Manager serves from
	started atomic.Bool // InCluster has returned
}

func refs(ref *metav1.OwnerReference) []metav1.OwnerReference {
	if ref == nil {
		return nil
	}
	return []metav1.OwnerReference{*ref}
}

// owners gives the certificate Secret its owner when a write creates it.
// Once started, a missing owner fails the write: the webhook is being
// uninstalled, and a Secret made now would outlive it.
func (k *keeper) owners(ctx context.Context) ([]metav1.OwnerReference, error) {
	ref, err := k.owner.ref(ctx)
	if err != nil && !k.started.Load() {
		return nil, nil
	}
	return refs(ref), err
}

// serve obtains or loads the serving certificate that ca issues.
func (k *keeper) serve(ctx context.Context, ca *CA) (*serving, error) {
	magic, cache := newMagic(k.log, k.cfg.RenewCheckInterval, certmagic.Config{
		Storage:            k.storage,
		Issuers:            []certmagic.Issuer{&Issuer{CA: ca, Lifetime: k.cfg.Lifetime}},
		DefaultServerName:  k.cfg.DNSNames[0],
		FallbackServerName: k.cfg.DNSNames[0],
	})
	if err := magic.ManageSync(ctx, k.cfg.DNSNames); err != nil {
		cache.Stop()
		return nil, fmt.Errorf("obtaining serving certificate for %q: %w", k.cfg.DNSNames, err)
	}
	return &serving{magic: magic, cache: cache, ca: ca.CertPEM}, nil
}

// own makes ref an owner of both Secrets. A failure is logged and retried
// at the next check: it costs a Secret left after uninstall, never an
// admission.
func (k *keeper) own(ctx context.Context, ref metav1.OwnerReference) {
	for _, name := range []string{k.cfg.CASecret, k.cfg.StorageSecret} {
		if changed, err := adopt(ctx, k.secrets, name, ref); err != nil {
			k.log.Warn("owning the webhook's secret", zap.String("secret", name), zap.Error(err))
		} else if changed {
			k.log.Info("secret owned by the webhook configuration", zap.String("secret", name), zap.String("kind", ref.Kind), zap.String("owner", ref.Name))
		}
	}
}

// agree makes this replica and the CA Secret agree, and reports whether
// they do, so that no replica writes into a caBundle a CA nobody else can
// see. The Secret wins: if it holds another CA (another replica re-created
// it first), this replica serves a certificate of that CA from now on. If
// it is gone (its owner was deleted and re-created, and the garbage
// collector took it), it is re-created with this replica's CA, owned by the
// new owner; racing replicas all end up with the one that was created.
// While the owner itself is missing, a missing Secret is not re-created:
// the webhook is being uninstalled.
func (k *keeper) agree(ctx context.Context) bool {
	ref, ownerErr := k.owner.ref(ctx)
	if ownerErr != nil && !errors.Is(ownerErr, errOwnerGone) {
		k.log.Warn("reading the owner of the webhook's secrets", zap.Error(ownerErr))
	}
	var stored *CA
	s, err := k.secrets.Get(ctx, k.cfg.CASecret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if ref == nil && k.owner.name != "" {
			k.log.Warn("the CA secret is gone and its owner cannot be read; not re-creating it", zap.String("secret", k.cfg.CASecret), zap.Error(ownerErr))
			return false
		}
		if stored, err = publishCA(ctx, k.secrets, k.cfg.CASecret, k.ca.CertPEM, k.ca.keyPEM, refs(ref)); err != nil {
			k.log.Warn("re-creating the CA secret", zap.Error(err))
			return false
		}
		k.log.Info("CA secret re-created", zap.String("secret", k.cfg.CASecret))
	case err != nil:
		k.log.Warn("reading the CA secret", zap.Error(err))
		return false
	default:
		if stored, err = parseCA(s); err != nil {
			k.log.Warn("the CA secret does not hold a CA; serving the previous one", zap.Error(err))
			return false
		}
	}
	if !bytes.Equal(stored.Cert.Raw, k.ca.Cert.Raw) {
		next, err := k.serve(ctx, stored)
		if err != nil {
			k.log.Warn("serving from the CA in the secret", zap.Error(err))
			return false
		}
		k.m.swap(next)
		k.ca = stored
		k.log.Info("the CA secret holds another CA; serving from it", zap.String("secret", k.cfg.CASecret))
	}
	if ref != nil {
		k.own(ctx, *ref)
	}
	return true
}

// run checks every BundleInterval that the CA Secret and this replica
// agree, then writes the CA into the webhook configurations' caBundle.
func (k *keeper) run(ctx context.Context) error {
	t := time.NewTicker(k.cfg.BundleInterval)
	defer t.Stop()
	for {
		if k.agree(ctx) {
			for _, w := range []struct {
				kind, name string
				ensure     func(context.Context, kubernetes.Interface, string, []byte) (bool, error)
			}{
				{"MutatingWebhookConfiguration", k.cfg.WebhookConfiguration, EnsureCABundle},
				{"ValidatingWebhookConfiguration", k.cfg.ValidatingWebhookConfiguration, EnsureValidatingCABundle},
			} {
				if w.name == "" {
					continue
				}
				if changed, err := w.ensure(ctx, k.cfg.Client, w.name, k.ca.CertPEM); err != nil {
					k.log.Warn("keeping the webhook configuration's caBundle", zap.String("kind", w.kind), zap.String("name", w.name), zap.Error(err))
				} else if changed {
					k.log.Info("patched caBundle", zap.String("kind", w.kind), zap.String("name", w.name))
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RenewNow renews the serving certificate for name at once and serves the
// new one, as certmagic's maintenance does when a third of its life is left.
// For operators (and tests) who want a rotation on demand.
func (m *Manager) RenewNow(ctx context.Context, name string) error {
	s := m.cur.Load()
	if err := s.magic.RenewCertSync(ctx, name, true); err != nil {
		return err
	}
	// RenewCertSync stores the new certificate but leaves the cache alone.
	old := s.cache.AllMatchingCertificates(name)
	if _, err := s.magic.CacheManagedCertificate(ctx, name); err != nil {
		return err
	}
	var stale []string
	for _, c := range old {
		stale = append(stale, c.Hash())
	}
	s.cache.Remove(stale)
	return nil
}

// EnsureCABundle sets caBundle on every webhook of the named
// MutatingWebhookConfiguration and reports whether it changed anything.
// Needs get and update on that configuration.
func EnsureCABundle(ctx context.Context, client kubernetes.Interface, name string, bundle []byte) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		changed = false
		api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
		mwc, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range mwc.Webhooks {
			if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, bundle) {
				mwc.Webhooks[i].ClientConfig.CABundle = bundle
				changed = true
			}
		}
		if !changed {
			return nil
		}
		_, err = api.Update(ctx, mwc, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return false, fmt.Errorf("MutatingWebhookConfiguration %q not found", name)
	}
	return changed, err
}

// EnsureValidatingCABundle is EnsureCABundle for a
// ValidatingWebhookConfiguration. Needs get and update on it.
func EnsureValidatingCABundle(ctx context.Context, client kubernetes.Interface, name string, bundle []byte) (bool, error) {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		changed = false
		api := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
		vwc, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range vwc.Webhooks {
			if !bytes.Equal(vwc.Webhooks[i].ClientConfig.CABundle, bundle) {
				vwc.Webhooks[i].ClientConfig.CABundle = bundle
				changed = true
			}
		}
		if !changed {
			return nil
		}
		_, err = api.Update(ctx, vwc, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return false, fmt.Errorf("ValidatingWebhookConfiguration %q not found", name)
	}
	return changed, err
}
