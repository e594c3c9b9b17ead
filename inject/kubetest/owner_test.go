package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"mcpguard.dev/mcpguard/inject/servingcert"
)

// The garbage collector deletes the own-CA Secrets after the webhook
// configuration that owns them (helm uninstall, kubectl delete -k; issue
// #16). envtest runs no garbage collector: these tests check the owner
// references it acts on, and delete the Secrets themselves where it would;
// e2e's TestHelm watches the real one do it.

// ownerConfiguration creates a MutatingWebhookConfiguration whose one
// webhook matches no object (so it never disturbs another test) and
// returns it.
func ownerConfiguration(t *testing.T, name string) *admissionregv1.MutatingWebhookConfiguration {
	t.Helper()
	mwc, err := webhookConfiguration(name, "https://127.0.0.1:1", func(m *admissionregv1.MutatingWebhookConfiguration) {
		ignore := admissionregv1.Ignore
		m.Webhooks = m.Webhooks[:1]
		m.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"mcpguard-test": "never"}}
		m.Webhooks[0].FailurePolicy = &ignore
	})
	if err != nil {
		t.Fatal(err)
	}
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	got, err := api.Create(context.Background(), mwc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return got
}

// owners returns the owner references of the Secret name in ns as
// "Kind/name/uid" strings; nil if it has none, and "missing" if the Secret
// does not exist.
func owners(t *testing.T, ns, name string) []string {
	t.Helper()
	s, err := client.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return []string{"missing"}
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range s.OwnerReferences {
		out = append(out, fmt.Sprintf("%s/%s/%s", r.Kind, r.Name, r.UID))
		if r.APIVersion != "admissionregistration.k8s.io/v1" || r.BlockOwnerDeletion != nil || r.Controller != nil {
			t.Errorf("secret %s owner reference %+v: want admissionregistration.k8s.io/v1, no blockOwnerDeletion, no controller", name, r)
		}
	}
	return out
}

func ownedBy(kind, name string, uid types.UID) []string {
	return []string{fmt.Sprintf("%s/%s/%s", kind, name, uid)}
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// waitOwners waits up to 10 s for both Secrets of ns to have want as their
// owner references.
func waitOwners(t *testing.T, ns string, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ca, certs := owners(t, ns, "mcpguard-webhook-ca"), owners(t, ns, "mcpguard-webhook-certs")
		if equal(ca, want) && equal(certs, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("owners of the CA secret %q and of the certificate secret %q; want %q for both", ca, certs, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCASecretsOwned: whichever way the Secrets came to be, they end up
// owned by the webhook configuration, or by nothing when there is none.
func TestCASecretsOwned(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before runs before the webhook starts and returns its config.
		before func(t *testing.T, ns string) servingcert.InClusterConfig
		// after runs once the webhook runs and returns the owners wanted.
		after func(t *testing.T, ns string, cfg servingcert.InClusterConfig) []string
	}{{
		name: "fresh install",
		before: func(t *testing.T, ns string) servingcert.InClusterConfig {
			ownerConfiguration(t, ns)
			return servingcert.InClusterConfig{WebhookConfiguration: ns}
		},
		after: func(t *testing.T, ns string, _ servingcert.InClusterConfig) []string {
			mwc, _ := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), ns, metav1.GetOptions{})
			return ownedBy("MutatingWebhookConfiguration", ns, mwc.UID)
		},
	}, {
		name: "secrets of the previous version, without an owner",
		before: func(t *testing.T, ns string) servingcert.InClusterConfig {
			// What the previous version's webhook left: both Secrets, no owner.
			old, err := servingcert.InCluster(context.Background(), servingcert.InClusterConfig{Client: client, Namespace: ns, DNSNames: []string{hookName}})
			if err != nil {
				t.Fatal(err)
			}
			old.Close()
			if got := owners(t, ns, "mcpguard-webhook-ca"); got != nil {
				t.Fatalf("without a configuration the CA secret has owners %q", got)
			}
			ownerConfiguration(t, ns)
			return servingcert.InClusterConfig{WebhookConfiguration: ns}
		},
		after: func(t *testing.T, ns string, _ servingcert.InClusterConfig) []string {
			mwc, _ := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), ns, metav1.GetOptions{})
			return ownedBy("MutatingWebhookConfiguration", ns, mwc.UID)
		},
	}, {
		name: "configuration applied after the webhook started",
		before: func(t *testing.T, ns string) servingcert.InClusterConfig {
			return servingcert.InClusterConfig{WebhookConfiguration: ns}
		},
		after: func(t *testing.T, ns string, _ servingcert.InClusterConfig) []string {
			if got := owners(t, ns, "mcpguard-webhook-ca"); got != nil {
				t.Errorf("CA secret owners %q before the configuration exists", got)
			}
			mwc := ownerConfiguration(t, ns)
			return ownedBy("MutatingWebhookConfiguration", ns, mwc.UID)
		},
	}, {
		name: "validating configuration only",
		before: func(t *testing.T, ns string) servingcert.InClusterConfig {
			vwc, err := validatingConfiguration("https://127.0.0.1:1")
			if err != nil {
				t.Fatal(err)
			}
			vwc.Name = ns
			for i := range vwc.Webhooks {
				vwc.Webhooks[i].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"mcpguard-test": "never"}}
			}
			api := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
			if _, err := api.Create(context.Background(), vwc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { api.Delete(context.Background(), ns, metav1.DeleteOptions{}) })
			return servingcert.InClusterConfig{ValidatingWebhookConfiguration: ns}
		},
		after: func(t *testing.T, ns string, _ servingcert.InClusterConfig) []string {
			vwc, _ := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), ns, metav1.GetOptions{})
			return ownedBy("ValidatingWebhookConfiguration", ns, vwc.UID)
		},
	}, {
		name: "no configuration: no owner",
		before: func(t *testing.T, ns string) servingcert.InClusterConfig {
			return servingcert.InClusterConfig{}
		},
		after: func(t *testing.T, ns string, _ servingcert.InClusterConfig) []string { return nil },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ns := namespace(t, nil)
			cfg := tc.before(t, ns)
			cfg.Client, cfg.Namespace, cfg.DNSNames = client, ns, []string{hookName}
			cfg.BundleInterval, cfg.Logger = 100*time.Millisecond, zap.NewNop()
			caBefore, _ := client.CoreV1().Secrets(ns).Get(ctx, "mcpguard-webhook-ca", metav1.GetOptions{})
			m, err := servingcert.InCluster(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			go m.Run(ctx)
			want := tc.after(t, ns, cfg)
			waitOwners(t, ns, want)
			if caBefore.Data != nil && !bytes.Equal(caBefore.Data["tls.crt"], m.CABundle()) {
				t.Error("the webhook replaced the CA of the existing secret")
			}
		})
	}
}

// TestCAConcurrentCreators starts replicas at once against no Secret: they
// all end up with one CA, in a Secret owned by the configuration.
func TestCAConcurrentCreators(t *testing.T) {
	ns := namespace(t, nil)
	mwc := ownerConfiguration(t, ns)
	const replicas = 4
	managers := make([]*servingcert.Manager, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-start
			managers[i], errs[i] = servingcert.InCluster(context.Background(), servingcert.InClusterConfig{
				Client: client, Namespace: ns, DNSNames: []string{hookName}, WebhookConfiguration: ns, Logger: zap.NewNop(),
			})
		})
	}
	close(start)
	wg.Wait()
	for i, m := range managers {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		defer m.Close()
	}
	s, err := client.CoreV1().Secrets(ns).Get(context.Background(), "mcpguard-webhook-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range managers {
		if !bytes.Equal(m.CABundle(), s.Data["tls.crt"]) {
			t.Errorf("replica %d serves another CA than the secret's", i)
		}
		verifyServed(t, m, s.Data["tls.crt"])
	}
	waitOwners(t, ns, ownedBy("MutatingWebhookConfiguration", ns, mwc.UID))
}

// verifyServed checks that m serves a certificate for hookName that
// verifies against caPEM alone.
func verifyServed(t *testing.T, m *servingcert.Manager, caPEM []byte) {
	t.Helper()
	c, err := m.TLSConfig().GetCertificate(&tls.ClientHelloInfo{ServerName: hookName})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: hookName, Roots: pool}); err != nil {
		t.Errorf("served certificate against the CA: %v", err)
	}
}

// TestOwnerRecreated deletes the webhook configuration while two replicas
// run and does what the garbage collector then does (deletes both
// Secrets): nothing is re-created while the configuration is gone; once it
// is back, the CA the replicas serve is back in a Secret owned by the new
// configuration, and in its caBundle. Then a new replica wins the race to
// re-create the Secret with a new CA: the running replicas take that CA.
// At no point do they end with two CAs.
func TestOwnerRecreated(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t, nil)
	ownerConfiguration(t, ns)
	secrets := client.CoreV1().Secrets(ns)
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	var replicas []*servingcert.Manager
	for range 2 {
		m, err := servingcert.InCluster(ctx, servingcert.InClusterConfig{
			Client: client, Namespace: ns, DNSNames: []string{hookName}, WebhookConfiguration: ns,
			BundleInterval: 100 * time.Millisecond, Logger: zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		go m.Run(ctx)
		replicas = append(replicas, m)
	}
	first := replicas[0].CABundle()
	collect := func() {
		for _, s := range []string{"mcpguard-webhook-ca", "mcpguard-webhook-certs"} {
			if err := secrets.Delete(ctx, s, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
	}
	// agreeOn waits until both replicas, the Secret and the caBundle hold
	// caPEM.
	agreeOn := func(what string, caPEM []byte) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := secrets.Get(ctx, "mcpguard-webhook-ca", metav1.GetOptions{})
			mwc, merr := mwcs.Get(ctx, ns, metav1.GetOptions{})
			ok := err == nil && merr == nil && bytes.Equal(s.Data["tls.crt"], caPEM) && bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, caPEM)
			for _, m := range replicas {
				ok = ok && bytes.Equal(m.CABundle(), caPEM)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the replicas, the CA secret (%v) and the caBundle (%v) do not agree on the CA after 10s", what, err, merr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, m := range replicas {
			verifyServed(t, m, caPEM)
		}
	}
	agreeOn("started", first)

	// The configuration goes (uninstall), and the garbage collector takes
	// the Secrets: the replicas, still draining, must not re-create them.
	if err := mwcs.Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	collect()
	time.Sleep(500 * time.Millisecond)
	if got := owners(t, ns, "mcpguard-webhook-ca"); !equal(got, []string{"missing"}) {
		t.Fatalf("CA secret re-created (owners %q) while its owner is gone: it would outlive the uninstall", got)
	}

	// The configuration comes back (re-applied): the CA the replicas serve
	// is published again, owned by the new object.
	mwc := ownerConfiguration(t, ns)
	agreeOn("configuration re-created", first)
	want := ownedBy("MutatingWebhookConfiguration", ns, mwc.UID)
	if got := owners(t, ns, "mcpguard-webhook-ca"); !equal(got, want) {
		t.Errorf("re-created CA secret owned by %q, want %q", got, want)
	}

	// A new replica re-creates the Secret first, with a CA of its own
	// (retried if a running replica was quicker): the running ones take it.
	var next []byte
	for next == nil {
		collect()
		m, err := servingcert.InCluster(ctx, servingcert.InClusterConfig{
			Client: client, Namespace: ns, DNSNames: []string{hookName}, WebhookConfiguration: ns,
			BundleInterval: 100 * time.Millisecond, Logger: zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if !bytes.Equal(m.CABundle(), first) {
			next = m.CABundle()
			go m.Run(ctx)
			replicas = append(replicas, m)
		}
	}
	agreeOn("a new replica's CA", next)
	waitOwners(t, ns, want)
}
