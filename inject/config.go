package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is everything Mutate needs besides the pod. Build it, call
// WithDefaults, then Validate; NewWebhook does both. Every field says what its
// zero value means.
type Config struct {
	// Image is the sidecar's image (the mcpguard binary). Required. Its
	// USER must be numeric and non-zero: the sidecar runs with runAsNonRoot
	// and no fixed runAsUser, as OpenShift's restricted-v2 SCC wants.
	Image string
	// ImagePullPolicy of the sidecar. Zero: IfNotPresent.
	ImagePullPolicy corev1.PullPolicy

	// Upstream is the MCP gateway URL the sidecar forwards to, e.g.
	// http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp.
	// Required, http or https.
	Upstream string
	// UpstreamHost is the Host header sent upstream (the gateway's listener
	// hostname, e.g. mcp.127-0-0-1.sslip.io). Zero: the URL's host.
	UpstreamHost string
	// Audience of the projected ServiceAccount token mounted into the
	// sidecar only; the gateway accepts tokens of this audience only.
	// Required.
	Audience string
	// TokenExpirationSeconds of that token; the kubelet rotates it at 80%.
	// Zero: 3600. Kubernetes' minimum is 600.
	TokenExpirationSeconds int64

	// PolicyConfigMap is the namespace default policy ConfigMap, used when
	// a pod has no AnnotationPolicyConfigMap. Zero: "mcpguard-policy".
	PolicyConfigMap string
	// PolicyKey is the key of the policy in that ConfigMap. Zero:
	// "policy.yaml".
	PolicyKey string

	// ListenPort is the sidecar's MCP port on 127.0.0.1. Zero: 8081.
	ListenPort int32
	// AdminPort serves /healthz and /readyz for the kubelet's probes. It
	// listens on all addresses because the kubelet probes the pod IP, never
	// the pod's loopback. Zero: 9901.
	AdminPort int32
	// MCPPath is the MCP endpoint's path on the sidecar. Zero: "/mcp".
	MCPPath string
	// AgentEnv names the variables set in every agent container to the
	// sidecar's URL (http://127.0.0.1:8081/mcp). Zero: MCP_GATEWAY_URL.
	AgentEnv []string
	// MeshContainers are containers that are not agents: they get no
	// AgentEnv and may not be refused for what they mount. Zero:
	// istio-proxy.
	MeshContainers []string

	// Resources of the sidecar. Zero: requests cpu 50m and memory 64Mi,
	// limit memory 256Mi.
	Resources corev1.ResourceRequirements

	// RuntimeClasses are the values AnnotationRuntimeClass may take; each is
	// the name of a RuntimeClass. Zero: kata.
	RuntimeClasses []string
	// DefaultRuntimeClass is set on pods without AnnotationRuntimeClass.
	// Zero: none (the cluster default runtime).
	DefaultRuntimeClass string
	// MemoryFloor is the least total memory request (containers plus the
	// sidecar) of a pod with a runtime class. Kata sizes its guest VM from
	// its own default (2Gi) plus limits, so this is a policy choice, not a
	// Kata requirement (docs/webhook.md). Zero: no floor.
	MemoryFloor resource.Quantity
	// MemoryFloorAction says what happens below the floor. Zero:
	// FloorRaise.
	MemoryFloorAction FloorAction

	// Version is recorded in AnnotationStatus. Zero: "dev".
	Version string
}

// FloorAction says what Mutate does with a pod below Config.MemoryFloor.
type FloorAction string

const (
	// FloorRaise raises the first agent container's memory request (and its
	// limit, if lower) to reach the floor, with an admission warning.
	FloorRaise FloorAction = "raise"
	// FloorDeny refuses the pod.
	FloorDeny FloorAction = "deny"
)

// Settings is a short digest of everything in c that shapes an injected
// pod (every field but Version): two webhooks with equal Settings inject the
// same sidecar. Recorded in AnnotationStatus.
func (c Config) Settings() string {
	c.Version = ""
	b, err := json.Marshal(c)
	if err != nil {
		return "" // a Config always encodes; an empty digest never matches
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if c.TokenExpirationSeconds == 0 {
		c.TokenExpirationSeconds = 3600
	}
	if c.PolicyConfigMap == "" {
		c.PolicyConfigMap = "mcpguard-policy"
	}
	if c.PolicyKey == "" {
		c.PolicyKey = "policy.yaml"
	}
	if c.ListenPort == 0 {
		c.ListenPort = 8081
	}
	if c.AdminPort == 0 {
		c.AdminPort = 9901
	}
	if c.MCPPath == "" {
		c.MCPPath = "/mcp"
	}
	if len(c.AgentEnv) == 0 {
		c.AgentEnv = []string{"MCP_GATEWAY_URL"}
	}
	if len(c.MeshContainers) == 0 {
		c.MeshContainers = []string{"istio-proxy"}
	}
	if c.Resources.Requests == nil && c.Resources.Limits == nil {
		c.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("50m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("256Mi"),
			},
		}
	}
	if len(c.RuntimeClasses) == 0 {
		c.RuntimeClasses = []string{"kata"}
	}
	if c.MemoryFloorAction == "" {
		c.MemoryFloorAction = FloorRaise
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	return c
}

// Validate reports every problem with c at once, each naming the field and
// its value. Call it on c.WithDefaults().
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Image == "" {
		bad("image is required: the sidecar's image, e.g. ghcr.io/example/mcpguard:v1")
	} else if strings.ContainsAny(c.Image, " \t\n") {
		bad("image %q contains whitespace", c.Image)
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("image pull policy %q is not Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	if c.Upstream == "" {
		bad("upstream is required: the MCP gateway URL, e.g. http://mcp-gateway-istio.gateway-system.svc.cluster.local:8080/mcp")
	} else if u, err := url.Parse(c.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("upstream %q is not an absolute http or https URL", c.Upstream)
	}
	if c.UpstreamHost != "" && strings.ContainsAny(c.UpstreamHost, "/ \t\n") {
		bad("upstream host %q is not a host name", c.UpstreamHost)
	}
	if c.Audience == "" {
		bad("audience is required: the audience the gateway accepts in the sidecar's projected token")
	}
	if c.TokenExpirationSeconds < 600 {
		bad("token expiration %ds is below Kubernetes' minimum of 600s", c.TokenExpirationSeconds)
	}
	if msgs := validation.IsDNS1123Subdomain(c.PolicyConfigMap); len(msgs) > 0 {
		bad("policy ConfigMap %q is not a valid name: %s", c.PolicyConfigMap, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsConfigMapKey(c.PolicyKey); len(msgs) > 0 {
		bad("policy key %q is not a valid ConfigMap key: %s", c.PolicyKey, strings.Join(msgs, "; "))
	}
	for name, p := range map[string]int32{"listen port": c.ListenPort, "admin port": c.AdminPort} {
		if p < 1 || p > 65535 {
			bad("%s %d is not between 1 and 65535", name, p)
		}
	}
	if c.ListenPort == c.AdminPort {
		bad("listen port and admin port are both %d", c.ListenPort)
	}
	if !strings.HasPrefix(c.MCPPath, "/") {
		bad("MCP path %q does not start with %q", c.MCPPath, "/")
	}
	for _, e := range c.AgentEnv {
		if msgs := validation.IsEnvVarName(e); len(msgs) > 0 {
			bad("agent env %q is not a valid variable name: %s", e, strings.Join(msgs, "; "))
		}
	}
	if slices.Contains(c.MeshContainers, SidecarName) {
		bad("mesh containers include %q, mcpguard's own sidecar", SidecarName)
	}
	for _, rc := range c.RuntimeClasses {
		if msgs := validation.IsDNS1123Subdomain(rc); len(msgs) > 0 {
			bad("runtime class %q is not a valid RuntimeClass name: %s", rc, strings.Join(msgs, "; "))
		}
	}
	if c.DefaultRuntimeClass != "" && !slices.Contains(c.RuntimeClasses, c.DefaultRuntimeClass) {
		bad("default runtime class %q is not one of the runtime classes %q", c.DefaultRuntimeClass, c.RuntimeClasses)
	}
	if c.MemoryFloor.Sign() < 0 {
		bad("memory floor %q is negative", c.MemoryFloor.String())
	}
	if c.MemoryFloorAction != FloorRaise && c.MemoryFloorAction != FloorDeny {
		bad("memory floor action %q is not %q or %q", c.MemoryFloorAction, FloorRaise, FloorDeny)
	}
	return errors.Join(errs...)
}
