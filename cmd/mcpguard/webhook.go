//go:build !sidecar

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"mcpguard.dev/mcpguard/inject"
	"mcpguard.dev/mcpguard/inject/policycheck"
	"mcpguard.dev/mcpguard/inject/servingcert"
)

// webhookEnvPrefix: every flag of `mcpguard webhook` and `mcpguard inject`
// can also be set as MCPGUARD_WEBHOOK_<FLAG> (upper case, "-" as "_");
// flags win.
const webhookEnvPrefix = "MCPGUARD_WEBHOOK_"

// injectFlags are the flags that become an inject.Config, shared by
// `mcpguard webhook` and `mcpguard inject`.
type injectFlags struct {
	cfg                                        inject.Config
	tokenExpiration                            time.Duration
	cpuRequest, memRequest, memLimit, memFloor string
	pullPolicy, floorAction                    string
}

func (f *injectFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cfg.Image, "image", "", "the sidecar's image (the mcpguard binary); required")
	fs.StringVar(&f.pullPolicy, "image-pull-policy", "IfNotPresent", "Always, IfNotPresent or Never")
	fs.StringVar(&f.cfg.Upstream, "upstream", "", "the MCP gateway URL the sidecar forwards to; required")
	fs.StringVar(&f.cfg.UpstreamHost, "upstream-host", "", "Host header for the gateway (default: the URL's host)")
	fs.StringVar(&f.cfg.Audience, "audience", "", "audience of the sidecar's projected ServiceAccount token, the one the gateway accepts; required")
	fs.DurationVar(&f.tokenExpiration, "token-expiration", time.Hour, "lifetime of that token (at least 10m)")
	fs.StringVar(&f.cfg.PolicyConfigMap, "policy-configmap", "mcpguard-policy", "namespace default policy ConfigMap, when a pod has no "+inject.AnnotationPolicyConfigMap+" annotation")
	fs.StringVar(&f.cfg.PolicyKey, "policy-key", "policy.yaml", "key of the policy in that ConfigMap")
	fs.Int32Var(&f.cfg.ListenPort, "sidecar-port", 8081, "the sidecar's MCP port on 127.0.0.1")
	fs.Int32Var(&f.cfg.AdminPort, "sidecar-admin-port", 9901, "the sidecar's /healthz and /readyz port (probed by the kubelet on the pod IP)")
	fs.StringVar(&f.cfg.MCPPath, "mcp-path", "/mcp", "the sidecar's MCP path")
	fs.StringSliceVar(&f.cfg.AgentEnv, "agent-env", []string{"MCP_GATEWAY_URL"}, "variables set in agent containers to the sidecar's URL")
	fs.StringSliceVar(&f.cfg.MeshContainers, "mesh-containers", []string{"istio-proxy"}, "containers that are not agents")
	fs.StringVar(&f.cpuRequest, "sidecar-cpu-request", "50m", "the sidecar's CPU request")
	fs.StringVar(&f.memRequest, "sidecar-memory-request", "64Mi", "the sidecar's memory request")
	fs.StringVar(&f.memLimit, "sidecar-memory-limit", "256Mi", "the sidecar's memory limit (empty: none)")
	fs.StringSliceVar(&f.cfg.RuntimeClasses, "runtime-classes", []string{"kata"}, "values the "+inject.AnnotationRuntimeClass+" annotation may take")
	fs.StringVar(&f.cfg.DefaultRuntimeClass, "default-runtime-class", "", "runtime class for injected pods without the annotation (default: none)")
	fs.StringVar(&f.memFloor, "memory-floor", "", "least total memory request of a pod with a runtime class, e.g. 2Gi (default: no floor)")
	fs.StringVar(&f.floorAction, "memory-floor-action", "raise", "below the floor: raise (the first agent's request, with a warning) or deny")
}

// config turns the flags into a validated inject.Config, reporting every
// problem at once.
func (f *injectFlags) config() (inject.Config, error) {
	var errs []error
	cfg := f.cfg
	cfg.Version = versionString()
	cfg.ImagePullPolicy = corev1.PullPolicy(f.pullPolicy)
	cfg.MemoryFloorAction = inject.FloorAction(f.floorAction)
	cfg.TokenExpirationSeconds = int64(f.tokenExpiration / time.Second)
	quantity := func(flag, v string) resource.Quantity {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q is not a quantity (e.g. 64Mi, 50m)", flag, v))
		}
		return q
	}
	cfg.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    quantity("sidecar-cpu-request", f.cpuRequest),
		corev1.ResourceMemory: quantity("sidecar-memory-request", f.memRequest),
	}}
	if f.memLimit != "" {
		cfg.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: quantity("sidecar-memory-limit", f.memLimit)}
	}
	if f.memFloor != "" {
		cfg.MemoryFloor = quantity("memory-floor", f.memFloor)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

type webhookFlags struct {
	inject             injectFlags
	listen             string
	certFile, keyFile  string
	reloadInterval     time.Duration
	namespace          string
	dnsNames           []string
	caSecret, certs    string
	webhookConfig      string
	validatingConfig   string
	certLifetime       time.Duration
	renewCheckInterval time.Duration
	drainTimeout       time.Duration
	logLevel           string
	namespaceDefaults  bool
}

func newWebhookCmd() *cobra.Command {
	var f webhookFlags
	cmd := &cobra.Command{
		Annotations: map[string]string{settingsPrefix: webhookEnvPrefix},
		Use:         "webhook --image IMAGE --upstream URL --audience AUD (--tls-cert-file F --tls-key-file F | --namespace NS --dns-names NAMES)",
		Short:       "Serve the admission webhook that injects the mcpguard sidecar",
		Long: `Serve AdmissionReview v1 over HTTPS: ` + inject.PathMutate + ` for pods annotated
` + inject.AnnotationInject + `: "true", ` + inject.PathMutateNamespace + ` for pods of namespaces labelled
` + inject.LabelNamespaceInject + `=` + inject.LabelNamespaceInjectEnabled + `, ` + policycheck.Path + ` for policy ConfigMaps (refused
with every error of ` + "`mcpguard policy check`" + `), ` + inject.PathHealthz + ` for probes.

TLS comes either from mounted files (--tls-cert-file/--tls-key-file, e.g. an
OpenShift service-ca or cert-manager Secret), reloaded when they rotate, or from
mcpguard's own CA (--namespace, --dns-names): the CA and the certificate live in
Secrets shared by all replicas, and the caBundle of --webhook-configuration is
kept equal to the CA. See docs/webhook.md.

Every flag can also be set as ` + webhookEnvPrefix + `<FLAG>, e.g. ` + webhookEnvPrefix + `IMAGE.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWebhook(cmd.Context(), &f)
		},
	}
	f.register(cmd.Flags())
	addConfigFlag(cmd)
	return cmd
}

// register adds every flag of `mcpguard webhook` to fs; `inject
// --from-cluster` parses the installed webhook's arguments with it.
func (f *webhookFlags) register(fs *pflag.FlagSet) {
	f.inject.register(fs)
	fs.StringVar(&f.listen, "listen", ":8443", "HTTPS address")
	fs.StringVar(&f.certFile, "tls-cert-file", "", "serving certificate (PEM), reloaded when it changes; with --tls-key-file")
	fs.StringVar(&f.keyFile, "tls-key-file", "", "serving key (PEM)")
	fs.DurationVar(&f.reloadInterval, "tls-reload-interval", 10*time.Second, "how often the mounted files are checked")
	fs.StringVar(&f.namespace, "namespace", "", "the webhook's namespace, where its CA and certificate Secrets live (own-CA mode)")
	fs.StringSliceVar(&f.dnsNames, "dns-names", nil, "names of the serving certificate, e.g. mcpguard-webhook.mcpguard.svc (own-CA mode)")
	fs.StringVar(&f.caSecret, "ca-secret", "mcpguard-webhook-ca", "Secret holding the CA (own-CA mode)")
	fs.StringVar(&f.certs, "cert-secret", "mcpguard-webhook-certs", "Secret holding certmagic's certificates and locks (own-CA mode)")
	fs.StringVar(&f.webhookConfig, "webhook-configuration", "mcpguard", "MutatingWebhookConfiguration whose caBundle is kept (own-CA mode; empty: none)")
	fs.StringVar(&f.validatingConfig, "validating-webhook-configuration", "mcpguard", "ValidatingWebhookConfiguration (policy ConfigMaps) whose caBundle is kept (own-CA mode; empty: none)")
	fs.DurationVar(&f.certLifetime, "cert-lifetime", 7*24*time.Hour, "lifetime of a serving certificate; renewed with a third left (own-CA mode)")
	fs.DurationVar(&f.renewCheckInterval, "renew-check-interval", 10*time.Minute, "how often certmagic checks for renewal (own-CA mode)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM, let reviews in flight finish for this long")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.namespaceDefaults, "namespace-defaults", false, "read the "+inject.AnnotationRuntimeClass+" and "+inject.AnnotationPolicyConfigMap+" annotations of namespaces as defaults for their pods (needs get, list and watch on namespaces)")
}

func runWebhook(ctx context.Context, f *webhookFlags) error {
	var level slog.Level
	var errs []error
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q is not one of debug, info, warn, error", f.logLevel))
	}
	cfg, err := f.inject.config()
	if err != nil {
		errs = append(errs, err)
	}
	files := f.certFile != "" || f.keyFile != ""
	switch {
	case files && (f.certFile == "" || f.keyFile == ""):
		errs = append(errs, errors.New("--tls-cert-file and --tls-key-file go together"))
	case files && (f.namespace != "" || len(f.dnsNames) > 0):
		errs = append(errs, errors.New("--tls-cert-file is mounted-certificate mode; --namespace and --dns-names are own-CA mode: choose one"))
	case !files && (f.namespace == "" || len(f.dnsNames) == 0):
		errs = append(errs, errors.New("no TLS: pass --tls-cert-file and --tls-key-file, or --namespace and --dns-names for mcpguard's own CA"))
	}
	if len(errs) > 0 {
		return &exitError{code: exitUsage, err: errors.Join(errs...)}
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), zapLevel(level)))

	wh, err := inject.NewWebhook(cfg, log)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	// Policy ConfigMaps are checked at apply time by the same server
	// (manifests/base/validatingwebhookconfiguration.yaml).
	wh.Handle(policycheck.Path, &policycheck.Validator{Key: cfg.PolicyKey})
	var client kubernetes.Interface
	if !files || f.namespaceDefaults {
		if client, err = kubeClient(); err != nil {
			what := "tls" // own-CA mode keeps its certificate in the cluster
			if files {
				what = "--namespace-defaults"
			}
			return &exitError{code: exitFail, err: fmt.Errorf("%s: %w", what, err)}
		}
	}
	if f.namespaceDefaults {
		lookup, err := namespaceLookup(ctx, client)
		if err != nil {
			return &exitError{code: exitFail, err: err}
		}
		wh.WithNamespaces(lookup)
	}
	var certs *servingcert.Manager
	if files {
		certs, err = servingcert.FromFiles(ctx, f.certFile, f.keyFile, servingcert.FileOptions{Interval: f.reloadInterval, Logger: zl})
	} else {
		certs, err = servingcert.InCluster(ctx, servingcert.InClusterConfig{
			Client:                         client,
			Namespace:                      f.namespace,
			CASecret:                       f.caSecret,
			StorageSecret:                  f.certs,
			DNSNames:                       f.dnsNames,
			WebhookConfiguration:           f.webhookConfig,
			ValidatingWebhookConfiguration: f.validatingConfig,
			Lifetime:                       f.certLifetime,
			RenewCheckInterval:             f.renewCheckInterval,
			Logger:                         zl,
		})
	}
	if err != nil {
		return &exitError{code: exitFail, err: fmt.Errorf("tls: %w", err)}
	}
	defer certs.Close()

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("--listen: %w", err)}
	}
	srv := &http.Server{
		Handler:           wh,
		TLSConfig:         certs.TLSConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second, // the API server's timeoutSeconds is at most 30
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if err := certs.Run(runCtx); err != nil {
			log.Error("certificate maintenance stopped", "err", err)
		}
	}()
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	log.Info("mcpguard webhook listening", "listen", ln.Addr().String(), "version", versionString(), "tls", map[bool]string{true: "files", false: "own-ca"}[files])
	select {
	case err := <-served:
		return &exitError{code: exitFail, err: err}
	case <-ctx.Done():
	}
	// Shutdown closes the listener at once (new reviews go to the other
	// replica) and waits for the reviews in flight. Like the proxy, a drain
	// that times out is not a failure of the process: exit 0, and say so.
	log.Info("draining", "timeout", f.drainTimeout.String())
	sctx, scancel := context.WithTimeout(context.Background(), f.drainTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("drain timed out; closing remaining connections", "err", err)
		_ = srv.Close()
	}
	log.Info("stopped")
	return nil
}

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l <= slog.LevelDebug:
		return zapcore.DebugLevel
	case l <= slog.LevelInfo:
		return zapcore.InfoLevel
	case l <= slog.LevelWarn:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}

// namespaceLookup serves namespace annotations from an informer's cache,
// falling back to a read for a namespace created a moment ago.
func namespaceLookup(ctx context.Context, client kubernetes.Interface) (inject.NamespaceLookup, error) {
	factory := informers.NewSharedInformerFactory(client, 0)
	namespaces := factory.Core().V1().Namespaces()
	lister := namespaces.Lister()
	namespaces.Informer() // registers the informer before Start
	factory.Start(ctx.Done())
	sync, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, ok := range factory.WaitForCacheSync(sync.Done()) {
		if !ok {
			return nil, errors.New("--namespace-defaults: namespaces not listed within 30s (the webhook needs get, list and watch on namespaces)")
		}
	}
	return func(ctx context.Context, name string) (map[string]string, error) {
		ns, err := lister.Get(name)
		if apierrors.IsNotFound(err) {
			ns, err = client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		}
		if err != nil {
			return nil, err
		}
		return ns.Annotations, nil
	}, nil
}

// kubeClientNamespace is kubeClient and the namespace of the kubeconfig's
// context (or of the pod, in a cluster).
func kubeClientNamespace() (kubernetes.Interface, string, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil)
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	return client, ns, err
}

// kubeClient uses the in-cluster config, or $KUBECONFIG outside a cluster.
func kubeClient() (kubernetes.Interface, error) {
	rc, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return kubernetes.NewForConfig(rc)
}
