package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"mcpguard.dev/mcpguard/internal/kubenode"
)

// The stand-ins' Services get fixed ClusterIPs (TestClusterDNS checks the
// names resolve to them); pods find every Service by name through the
// node's cluster DNS (CoreDNS), with no hostAliases.
const (
	gatewayIP   = "10.96.0.80"
	internetIP  = "10.96.0.50"
	gatewayName = "mcp-gateway-istio.gateway-system.svc.cluster.local"
	gatewayHost = "mcp.127-0-0-1.sslip.io"
	agentNS     = "agents"
)

// env is the installed system every cluster test shares.
type env struct {
	n  *kubenode.Node
	kc kubernetes.Interface
	// kustomizeRemoved: a test (TestHelm) removed the kustomize install;
	// the next test that needs it installs it again.
	kustomizeRemoved bool
}

var (
	envOnce sync.Once
	theEnv  *env
	envErr  error
)

// installed starts the node and installs, in order: the webhook with
// scripts/install.sh and the shipped overlay (image substituted), the
// gateway and internet stand-ins, the agents namespace with
// scripts/setup-namespaces.sh, and the weather-agent Deployment.
func installed(t *testing.T) *env {
	t.Helper()
	n := startNode(t)
	envOnce.Do(func() { theEnv, envErr = install(n) })
	if envErr != nil {
		t.Fatal(envErr)
	}
	if theEnv.kustomizeRemoved {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := theEnv.installWebhook(ctx); err != nil {
			t.Fatal(err)
		}
		theEnv.kustomizeRemoved = false
	}
	return theEnv
}

// installWebhook installs the webhook as a platform team would:
// scripts/install.sh with the shipped overlay, only the image substituted.
// A namespace of an earlier install still terminating is waited for first.
func (e *env) installWebhook(ctx context.Context) error {
	if _, err := e.kubectl(ctx, "wait", "--for=delete", "namespace/mcpguard-system", "--timeout=180s"); err != nil && !strings.Contains(err.Error(), "not found") {
		return err
	}
	t0 := time.Now()
	if out, err := e.script(ctx, "install.sh", "--platform", "kubernetes", "--image", imageRepo+":ci", "--timeout", "300s"); err != nil {
		return fmt.Errorf("scripts/install.sh: %v\n%s", err, out)
	}
	figure("scripts/install.sh → webhook rolled out (2 replicas)", time.Since(t0))
	return nil
}

func install(n *kubenode.Node) (*env, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kc, err := kubernetes.NewForConfig(n.RESTConfig())
	if err != nil {
		return nil, err
	}
	e := &env{n: n, kc: kc}
	// The agents kustomization's Istio objects need their kinds to exist;
	// no Istio runs here (README), so the CRDs are registered schema-less.
	if err := e.apply(ctx, istioCRDs); err != nil {
		return nil, err
	}
	if _, err := e.kubectl(ctx, "wait", "--for=condition=Established", "crd/sidecars.networking.istio.io", "crd/serviceentries.networking.istio.io", "--timeout=60s"); err != nil {
		return nil, err
	}
	if err := e.installWebhook(ctx); err != nil {
		return nil, err
	}
	if err := e.apply(ctx, standIns); err != nil {
		return nil, err
	}
	// The demo's policy: the shipped one plus the demo's extras (secret
	// redaction and scanning), so the pod decides the demo's rows.
	policy, err := demoPolicy()
	if err != nil {
		return nil, err
	}
	if out, err := e.script(ctx, "setup-namespaces.sh", "--policy", policy, agentNS); err != nil {
		return nil, fmt.Errorf("scripts/setup-namespaces.sh: %v\n%s", err, out)
	}
	for _, d := range []string{"internet/internet", "gateway-system/gateway"} {
		ns, name, _ := strings.Cut(d, "/")
		if _, err := e.kubectl(ctx, "-n", ns, "rollout", "status", "deployment/"+name, "--timeout=180s"); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	if err := e.apply(ctx, agentDeployment("weather-agent", agentNS, "true", 0)); err != nil {
		return nil, err
	}
	if _, err := e.kubectl(ctx, "-n", agentNS, "rollout", "status", "deployment/weather-agent", "--timeout=180s"); err != nil {
		return nil, err
	}
	figure("annotated Deployment apply → Ready (sidecar injected)", time.Since(t0))
	return e, nil
}

// kubectl runs kubectl in the node's namespace.
func (e *env) kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := e.n.Kubectl(ctx, args...)
	return string(out), err
}

func (e *env) apply(ctx context.Context, yaml string) error {
	cmd := e.n.Command(ctx, e.n.Bin+"/kubectl", "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(yaml)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %v: %s", err, out)
	}
	return nil
}

// script runs one of the repository's scripts/ against the node, as a
// user would: inside its namespace, kubectl on PATH.
func (e *env) script(ctx context.Context, name string, args ...string) (string, error) {
	cmd := e.n.Command(ctx, "../scripts/"+name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// agentPod returns the running pod of a Deployment.
func (e *env) agentPod(t *testing.T, ns, app string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		pods, err := e.kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
					return p
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no running pod of %s/%s: %v", ns, app, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// exec runs a command in a container and returns its stdout.
func (e *env) exec(ctx context.Context, pod *corev1.Pod, container string, cmd ...string) (string, error) {
	return e.kubectl(ctx, append([]string{"-n", pod.Namespace, "exec", pod.Name, "-c", container, "--"}, cmd...)...)
}

// callResult mirrors e2e/peer's CallResult.
type callResult struct {
	Tool    string `json:"tool"`
	Args    string `json:"args"`
	Want    string `json:"want"`
	Outcome string `json:"outcome"`
	Status  int    `json:"status"`
	Rule    string `json:"rule"`
	Text    string `json:"text"`
	Error   string `json:"error"`
}

// call makes one tools/call from the agent container, through the sidecar
// unless url is set.
func (e *env) call(ctx context.Context, pod *corev1.Pod, tool, args string, extra ...string) (callResult, error) {
	cmd := append([]string{"/peer", "call"}, extra...)
	out, err := e.exec(ctx, pod, "agent", append(cmd, tool, args)...)
	var r callResult
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		return r, fmt.Errorf("peer call printed %q: %v", out, err)
	}
	return r, nil
}

// gatewayLog returns the gateway stand-in's log lines (one JSON object per
// request).
func (e *env) gatewayLog(ctx context.Context) ([]map[string]any, error) {
	out, err := e.kubectl(ctx, "-n", "gateway-system", "logs", "deployment/gateway")
	if err != nil {
		return nil, err
	}
	var lines []map[string]any
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		_, js, ok := strings.Cut(s.Text(), " {")
		if !ok {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte("{"+js), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines, nil
}

// agentDeployment is an agent as a platform team would write it: its own
// ServiceAccount without a token, restricted security settings, and the
// opt-in annotation mcpguard.dev/inject set to inject (none when empty).
// linger is how long the agent keeps running after SIGTERM.
func agentDeployment(name, ns, inject string, linger time.Duration) string {
	annotations := ""
	if inject != "" {
		annotations = fmt.Sprintf("      annotations:\n        mcpguard.dev/inject: %q\n", inject)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: %[1]s, namespace: %[2]s}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: %[1]s}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: %[1]s}
%[3]s    spec:
      serviceAccountName: %[1]s
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 30
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: agent
          image: %[4]s
          imagePullPolicy: Never
          args: [agent, -linger=%[5]s]
          resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 128Mi}}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, name, ns, annotations, peerImage, linger)
}

const istioCRDs = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: sidecars.networking.istio.io}
spec:
  group: networking.istio.io
  scope: Namespaced
  names: {plural: sidecars, singular: sidecar, kind: Sidecar}
  versions:
    - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: serviceentries.networking.istio.io}
spec:
  group: networking.istio.io
  scope: Namespaced
  names: {plural: serviceentries, singular: serviceentry, kind: ServiceEntry}
  versions:
    - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
`

// standIns: the internet stand-in, and the MCP gateway stand-in at the
// shipped gateway Service name, verifying tokens with TokenReview (the
// system:auth-delegator role allows exactly that).
var standIns = fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: internet}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: internet, namespace: internet}
spec:
  selector: {matchLabels: {app: internet}}
  template:
    metadata: {labels: {app: internet}}
    spec:
      automountServiceAccountToken: false
      containers:
        - {name: internet, image: %[1]s, imagePullPolicy: Never, args: [internet]}
---
apiVersion: v1
kind: Service
metadata: {name: internet, namespace: internet}
spec:
  clusterIP: %[2]s
  selector: {app: internet}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: gateway, namespace: gateway-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-gateway-tokenreview}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: gateway, namespace: gateway-system}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: gateway, namespace: gateway-system}
spec:
  selector: {matchLabels: {app: gateway}}
  template:
    metadata: {labels: {app: gateway}}
    spec:
      serviceAccountName: gateway
      containers:
        - {name: gateway, image: %[1]s, imagePullPolicy: Never, args: [gateway, -internet=internet.internet.svc.cluster.local:80, -audience=mcp-gateway]}
---
apiVersion: v1
kind: Service
metadata: {name: mcp-gateway-istio, namespace: gateway-system}
spec:
  clusterIP: %[3]s
  selector: {app: gateway}
  ports: [{port: 8080, targetPort: 8080}]
`, peerImage, internetIP, gatewayIP)

func demoPolicy() (string, error) {
	shipped, err := os.ReadFile("../manifests/policies/approved-apis.yaml")
	if err != nil {
		return "", err
	}
	extras, err := os.ReadFile("../internal/demo/extras.yaml")
	if err != nil {
		return "", err
	}
	f := filepath.Join(os.TempDir(), "mcpguard-e2e-policy.yaml")
	return f, os.WriteFile(f, append(append(shipped, []byte("\n---\n")...), extras...), 0o644)
}
