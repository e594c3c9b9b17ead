package servingcert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
// serving certificate and returns a Manager whose Run keeps the webhook
// configuration's caBundle current.
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
	secrets := cfg.Client.CoreV1().Secrets(cfg.Namespace)
	ca, err := LoadOrCreateCA(ctx, secrets, cfg.CASecret)
	if err != nil {
		return nil, err
	}
	magic, cache := newMagic(cfg.Logger, cfg.RenewCheckInterval, certmagic.Config{
		Storage:            &SecretStorage{Secrets: secrets, Name: cfg.StorageSecret},
		Issuers:            []certmagic.Issuer{&Issuer{CA: ca, Lifetime: cfg.Lifetime}},
		DefaultServerName:  cfg.DNSNames[0],
		FallbackServerName: cfg.DNSNames[0],
	})
	if err := magic.ManageSync(ctx, cfg.DNSNames); err != nil {
		cache.Stop()
		return nil, fmt.Errorf("obtaining serving certificate for %q: %w", cfg.DNSNames, err)
	}
	m := &Manager{magic: magic, cache: cache, log: cfg.Logger, CABundle: ca.CertPEM}
	if cfg.WebhookConfiguration != "" || cfg.ValidatingWebhookConfiguration != "" {
		m.run = func(ctx context.Context) error {
			t := time.NewTicker(cfg.BundleInterval)
			defer t.Stop()
			for {
				for _, w := range []struct {
					kind, name string
					ensure     func(context.Context, kubernetes.Interface, string, []byte) (bool, error)
				}{
					{"MutatingWebhookConfiguration", cfg.WebhookConfiguration, EnsureCABundle},
					{"ValidatingWebhookConfiguration", cfg.ValidatingWebhookConfiguration, EnsureValidatingCABundle},
				} {
					if w.name == "" {
						continue
					}
					if changed, err := w.ensure(ctx, cfg.Client, w.name, ca.CertPEM); err != nil {
						m.log.Warn("keeping the webhook configuration's caBundle", zap.String("kind", w.kind), zap.String("name", w.name), zap.Error(err))
					} else if changed {
						m.log.Info("patched caBundle", zap.String("kind", w.kind), zap.String("name", w.name))
					}
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		}
	}
	return m, nil
}

// RenewNow renews the serving certificate for name at once and serves the
// new one, as certmagic's maintenance does when a third of its life is left.
// For operators (and tests) who want a rotation on demand.
func (m *Manager) RenewNow(ctx context.Context, name string) error {
	if err := m.magic.RenewCertSync(ctx, name, true); err != nil {
		return err
	}
	// RenewCertSync stores the new certificate but leaves the cache alone.
	old := m.cache.AllMatchingCertificates(name)
	if _, err := m.magic.CacheManagedCertificate(ctx, name); err != nil {
		return err
	}
	var stale []string
	for _, c := range old {
		stale = append(stale, c.Hash())
	}
	m.cache.Remove(stale)
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
