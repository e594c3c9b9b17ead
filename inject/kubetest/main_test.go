package kubetest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"mcpguard.dev/mcpguard/inject"
	"mcpguard.dev/mcpguard/inject/policycheck"
	"mcpguard.dev/mcpguard/inject/servingcert"
)

// The shared environment: one etcd, one kube-apiserver, one webhook serving
// with mcpguard's own CA, one MutatingWebhookConfiguration. Tests run one at
// a time and each uses namespaces of its own.
var (
	env      *envtest.Environment
	client   kubernetes.Interface
	hook     *server
	hookName = "127.0.0.1" // the serving certificate's subject
)

const systemNamespace = "mcpguard-system"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprint(os.Stderr, `FAIL: KUBEBUILDER_ASSETS is not set.
These tests run a real kube-apiserver and etcd. Build them once per machine
(15-25 min, cached under ~/.cache/mcpguard/kube) and point the tests at them:
	KUBEBUILDER_ASSETS=$(scripts/kube-test-bins.sh) go test ./inject/...
scripts/test.sh does this for the whole suite.
`)
		return 1
	}
	start := time.Now()
	// The ServiceAccount admission plugin stays on: it mounts the default
	// token before webhooks run, which the webhook must undo. No
	// controller-manager runs, so namespace() creates the "default"
	// ServiceAccount the plugin looks up.
	env = &envtest.Environment{}
	// envtest disables the plugin by default; AlwaysDeny is off anyway.
	env.ControlPlane.GetAPIServer().Configure().Set("disable-admission-plugins", "AlwaysDeny")
	// As on OpenShift: setting an owner reference needs delete on the
	// object (the own-CA Secrets are owned by the webhook configuration).
	env.ControlPlane.GetAPIServer().Configure().Set("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	rc, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: starting kube-apiserver and etcd from %s: %v\n", os.Getenv("KUBEBUILDER_ASSETS"), err)
		return 1
	}
	defer env.Stop()
	client = kubernetes.NewForConfigOrDie(rc)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: setup: %v\n", err)
		return 1
	}
	defer hook.close()
	fmt.Fprintf(os.Stderr, "kubetest: environment ready in %v\n", time.Since(start).Round(100*time.Millisecond))
	return m.Run()
}

func setup(ctx context.Context) error {
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// As OpenShift sandboxed containers' operator creates it; the
	// RuntimeClass admission plugin refuses pods naming a missing one and
	// adds the overhead.
	kata := &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "kata"},
		Handler:    "kata",
		Overhead: &nodev1.Overhead{PodFixed: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("250m"),
			corev1.ResourceMemory: resource.MustParse("350Mi"),
		}},
	}
	if _, err := client.NodeV1().RuntimeClasses().Create(ctx, kata, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, ns := range []string{systemNamespace, "default"} {
		if err := defaultServiceAccount(ctx, ns); err != nil {
			return err
		}
	}
	certs, err := servingcert.InCluster(ctx, servingcert.InClusterConfig{
		Client:                         client,
		Namespace:                      systemNamespace,
		DNSNames:                       []string{hookName},
		WebhookConfiguration:           "mcpguard",
		ValidatingWebhookConfiguration: "mcpguard",
		BundleInterval:                 200 * time.Millisecond,
		Logger:                         zap.NewNop(),
	})
	if err != nil {
		return err
	}
	hook, err = startServer(ctx, certs.TLSConfig())
	if err != nil {
		return err
	}
	hook.certs = certs
	go certs.Run(ctx)
	mwc, err := webhookConfiguration("mcpguard", hook.url, nil)
	if err != nil {
		return err
	}
	if _, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		return err
	}
	vwc, err := validatingConfiguration(hook.url)
	if err != nil {
		return err
	}
	if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The API server picks up a new configuration within about a second;
	// the caBundle arrives with the next BundleInterval.
	if err := waitInjected(ctx, "default"); err != nil {
		return err
	}
	return waitValidating(ctx, "default")
}

// waitInjected creates dry-run annotated pods in ns until one comes back
// injected.
func waitInjected(ctx context.Context, ns string) error {
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		p, err := client.CoreV1().Pods(ns).Create(ctx, newPod("probe", map[string]string{inject.AnnotationInject: "true"}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && hasSidecar(p) {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook not effective after 20s: %v", last)
}

// webhookConfiguration reads the shared fixture, names it, points every
// webhook at base+path and lets mod adjust it.
func webhookConfiguration(name, base string, mod func(*admissionregv1.MutatingWebhookConfiguration)) (*admissionregv1.MutatingWebhookConfiguration, error) {
	b, err := os.ReadFile("testdata/mutatingwebhookconfiguration.yaml")
	if err != nil {
		return nil, err
	}
	var mwc admissionregv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(b, &mwc); err != nil {
		return nil, err
	}
	mwc.Name = name
	for i := range mwc.Webhooks {
		cc := &mwc.Webhooks[i].ClientConfig
		u := base + *cc.Service.Path
		cc.Service, cc.URL = nil, &u
	}
	if mod != nil {
		mod(&mwc)
	}
	return &mwc, nil
}

func testConfig() inject.Config {
	return inject.Config{
		Image:        "registry.example/mcpguard:v0.1.0",
		Upstream:     "http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp",
		UpstreamHost: "mcp.127-0-0-1.sslip.io",
		Audience:     "mcp-gateway",
		Version:      "v0.1.0-test",
	}
}

// server is an in-process webhook that counts and times the reviews it
// answers.
type server struct {
	wh    *inject.Webhook
	srv   *http.Server
	url   string
	certs *servingcert.Manager

	calls     atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration
}

func startServer(ctx context.Context, tc *tls.Config) (*server, error) {
	wh, err := inject.NewWebhook(testConfig(), nil)
	if err != nil {
		return nil, err
	}
	wh.Handle(policycheck.Path, &policycheck.Validator{Key: wh.Config().PolicyKey})
	s := &server{wh: wh}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// The API server's first calls fail the handshake until the caBundle
	// arrives; those are expected, so handshake errors are not logged.
	s.srv = &http.Server{Handler: s, TLSConfig: tc, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	s.url = "https://" + ln.Addr().String()
	go s.srv.ServeTLS(ln, "", "")
	return s, nil
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.wh.ServeHTTP(w, r)
	d := time.Since(start)
	s.calls.Add(1)
	s.mu.Lock()
	s.latencies = append(s.latencies, d)
	s.mu.Unlock()
}

func (s *server) takeLatencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.latencies
	s.latencies = nil
	return l
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	if s.certs != nil {
		s.certs.Close()
	}
}

var nsSeq atomic.Int64

// namespace creates a namespace of the test's own with the given labels.
func namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", nsSeq.Add(1), strings.ToLower(t.Name()))
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	name = strings.TrimRight(name[:min(len(name), 63)], "-")
	_, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := defaultServiceAccount(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

func defaultServiceAccount(ctx context.Context, ns string) error {
	_, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func newPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "agent",
			Image: "registry.example/agent:v1",
		}}},
	}
}

func createPod(t testing.TB, ns string, p *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	return client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
}

func hasSidecar(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == inject.SidecarName })
}

// statusMessage returns the API server's message for a refused create.
func statusMessage(err error) string {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return s.Status().Message
	}
	return err.Error()
}
