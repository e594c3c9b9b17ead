package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Scope says how a pod came to be considered for injection.
type Scope int

const (
	// ScopePod injects only pods annotated mcpguard.dev/inject: "true". The
	// webhook's /mutate path.
	ScopePod Scope = iota
	// ScopeNamespace also injects pods without the annotation: their
	// namespace carries the label mcpguard.dev/inject=enabled. The webhook's
	// /mutate/namespace path, and `mcpguard inject` unless --only-annotated.
	ScopeNamespace
)

// Target is what Mutate knows about a pod besides the pod itself.
type Target struct {
	// Scope says how the pod came to be reviewed.
	Scope Scope
	// NamespaceAnnotations are the annotations of the pod's namespace, when
	// the webhook reads namespaces (--namespace-defaults); nil otherwise.
	// AnnotationRuntimeClass and AnnotationPolicyConfigMap there are defaults
	// for the namespace's pods: a pod's own annotation wins, and
	// Config.DefaultRuntimeClass and Config.PolicyConfigMap come last.
	NamespaceAnnotations map[string]string
}

// SkipReason says why a pod was deliberately left unchanged.
type SkipReason string

const (
	// SkipNotOptedIn: the pod has no mcpguard.dev/inject annotation and did
	// not come through a namespace that opted in.
	SkipNotOptedIn SkipReason = "NotOptedIn"
	// SkipOptedOut: the pod is annotated mcpguard.dev/inject: "false".
	SkipOptedOut SkipReason = "OptedOut"
	// SkipNotPod: the admission request is for another kind, which a
	// misconfigured webhook rule sent; its pods come through on their own.
	SkipNotPod SkipReason = "NotPod"
	// SkipNotCreate: the request is not a CREATE; a pod's containers cannot
	// change after it is created (ephemeral containers are checked by
	// CheckEphemeral, not injected).
	SkipNotCreate SkipReason = "NotCreate"
)

// Result is the outcome of Mutate for a pod that is not refused.
type Result struct {
	// Pod is the mutated copy (the input itself when Skip is set).
	Pod *corev1.Pod
	// Skip is why the pod was left alone; empty when it was injected.
	Skip SkipReason
	// Warnings go back to the client as admission warnings.
	Warnings []string
}

// Refusal is the error Mutate returns for a pod that opted in but cannot be
// guarded as asked. The webhook denies the pod with its message, which lists
// every reason at once.
type Refusal struct {
	Reasons []string
}

func (r *Refusal) Error() string {
	return "mcpguard cannot guard this pod: " + strings.Join(r.Reasons, "; ")
}

// istioProxyUID is the UID whose traffic Istio's capture rules exclude
// (istio-iptables --proxy-uid); a sidecar running with it would escape
// REGISTRY_ONLY.
const istioProxyUID = 1337

// Status is the JSON recorded in AnnotationStatus.
type Status struct {
	Version         string   `json:"version"`
	Sidecar         string   `json:"sidecar"`
	Image           string   `json:"image"`
	Volumes         []string `json:"volumes"`
	AgentContainers []string `json:"agentContainers"`
	PolicyConfigMap string   `json:"policyConfigMap"`
	RuntimeClass    string   `json:"runtimeClass,omitempty"`
	// Settings is Config.Settings() of the webhook that injected the pod:
	// when the installed webhook's differs, the pod runs an older sidecar
	// configuration (`mcpguard pods --outdated`).
	Settings string `json:"settings,omitempty"`
}

// Mutate returns pod with mcpguard's sidecar injected, or the reason it was
// skipped, or a *Refusal. It never modifies pod. It is idempotent:
// Mutate(Mutate(p)) changes nothing, which is how a reinvoked webhook never
// injects twice, whatever other webhooks did in between. cfg must have been
// built with WithDefaults and passed Validate.
func Mutate(pod *corev1.Pod, cfg *Config, target Target) (Result, error) {
	if cfg.Image == "" || cfg.AdminPort == 0 {
		return Result{}, fmt.Errorf("inject: config was not defaulted and validated")
	}
	v, annotated := pod.Annotations[AnnotationInject]
	switch {
	case annotated && v == "false":
		return Result{Pod: pod, Skip: SkipOptedOut}, nil
	case annotated && v != "true":
		return Result{}, &Refusal{Reasons: []string{fmt.Sprintf("annotation %q has value %q; allowed values are \"true\" and \"false\"", AnnotationInject, v)}}
	case !annotated && target.Scope != ScopeNamespace:
		return Result{Pod: pod, Skip: SkipNotOptedIn}, nil
	}

	var reasons, warnings []string
	refuse := func(format string, args ...any) { reasons = append(reasons, fmt.Sprintf(format, args...)) }
	spec := &pod.Spec

	runtimeClass := cfg.DefaultRuntimeClass
	for _, a := range []struct {
		where string
		m     map[string]string
	}{{"namespace annotation", target.NamespaceAnnotations}, {"annotation", pod.Annotations}} {
		rc, ok := a.m[AnnotationRuntimeClass]
		if !ok {
			continue
		}
		if slices.Contains(cfg.RuntimeClasses, rc) {
			runtimeClass = rc
		} else {
			refuse("%s %q has value %q; allowed values are %s", a.where, AnnotationRuntimeClass, rc, quoteAll(cfg.RuntimeClasses))
		}
	}
	if runtimeClass != "" && spec.RuntimeClassName != nil && *spec.RuntimeClassName != runtimeClass {
		refuse("spec.runtimeClassName is %q but mcpguard was asked for runtime class %q; remove one of them", *spec.RuntimeClassName, runtimeClass)
	}
	policy := cfg.PolicyConfigMap
	for _, a := range []struct {
		where string
		m     map[string]string
	}{{"namespace annotation", target.NamespaceAnnotations}, {"annotation", pod.Annotations}} {
		p, ok := a.m[AnnotationPolicyConfigMap]
		if !ok {
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(p); len(msgs) > 0 {
			refuse("%s %q has value %q, which is not a ConfigMap name: %s", a.where, AnnotationPolicyConfigMap, p, strings.Join(msgs, "; "))
		}
		policy = p
	}

	// Non-bypassability: only the sidecar may hold the gateway's credential.
	if spec.ShareProcessNamespace != nil && *spec.ShareProcessNamespace {
		refuse("spec.shareProcessNamespace is true, which would let agent containers read the sidecar's token through /proc")
	}
	if spec.HostPID {
		refuse("spec.hostPID is true, which would let agent containers read the sidecar's token through /proc")
	}
	if spec.HostNetwork {
		refuse("spec.hostNetwork is true: the sidecar's 127.0.0.1:%d listener would be on the node's network", cfg.ListenPort)
	}
	if spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken {
		refuse("spec.automountServiceAccountToken is true; mcpguard turns it off so agent containers hold no Kubernetes credential (mount a projected token explicitly if an agent needs the Kubernetes API)")
	}
	if sc := spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		switch *sc.RunAsUser {
		case istioProxyUID:
			refuse("spec.securityContext.runAsUser is %d, Istio's proxy UID, whose traffic Istio never captures: the sidecar would inherit it", istioProxyUID)
		case 0:
			refuse("spec.securityContext.runAsUser is 0: the sidecar runs as non-root and would never start; set runAsUser on the containers that need it")
		}
	}
	ports := map[int32]string{cfg.ListenPort: "listen port", cfg.AdminPort: "admin port"}
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range cs {
			if c.Name == SidecarName {
				continue
			}
			for _, p := range c.Ports {
				if what, ok := ports[p.ContainerPort]; ok {
					refuse("container %q declares port %d, the sidecar's %s: containers of a pod share the network", c.Name, p.ContainerPort, what)
				}
			}
			if slices.Contains(cfg.MeshContainers, c.Name) {
				continue
			}
			if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == istioProxyUID {
				refuse("container %q runs as UID %d, Istio's proxy UID, whose traffic Istio never captures", c.Name, istioProxyUID)
			}
		}
	}
	if slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == SidecarName }) {
		refuse("container name %q is reserved for mcpguard's sidecar", SidecarName)
	}
	credVolumes := map[string]bool{TokenVolume: true}
	for _, vol := range spec.Volumes {
		if vol.Name != TokenVolume && carriesAudience(vol, cfg.Audience) {
			credVolumes[vol.Name] = true
		}
	}
	checkMounts := func(field string, cs []corev1.Container) {
		for _, c := range cs {
			if c.Name == SidecarName {
				continue
			}
			for _, m := range c.VolumeMounts {
				if credVolumes[m.Name] {
					refuse("%s %q mounts volume %q, which carries the sidecar's gateway credential (audience %q)", field, c.Name, m.Name, cfg.Audience)
				}
			}
		}
	}
	checkMounts("container", spec.Containers)
	checkMounts("init container", spec.InitContainers)

	out := pod.DeepCopy()
	ospec := &out.Spec

	var agents []string
	url := "http://127.0.0.1:" + strconv.Itoa(int(cfg.ListenPort)) + cfg.MCPPath
	for i := range ospec.Containers {
		c := &ospec.Containers[i]
		if slices.Contains(cfg.MeshContainers, c.Name) {
			continue
		}
		agents = append(agents, c.Name)
		for _, name := range cfg.AgentEnv {
			if w := setEnv(c, name, url); w != "" {
				warnings = append(warnings, w)
			}
		}
	}
	if len(agents) == 0 {
		refuse("the pod has no agent container: every container is a mesh container (%s)", quoteAll(cfg.MeshContainers))
	}

	sidecar := sidecarContainer(cfg, policy)
	ospec.InitContainers = placeSidecar(ospec.InitContainers, sidecar, cfg.MeshContainers)
	for _, vol := range sidecarVolumes(cfg, policy) {
		ospec.Volumes = putVolume(ospec.Volumes, vol)
	}
	no := false
	ospec.AutomountServiceAccountToken = &no
	removeDefaultToken(ospec)
	if ospec.ServiceAccountName == "" {
		// What the ServiceAccount admission plugin does before any webhook;
		// a projected token needs it. Here for `mcpguard inject`.
		ospec.ServiceAccountName = "default"
	}
	if runtimeClass != "" {
		ospec.RuntimeClassName = &runtimeClass
		if !cfg.MemoryFloor.IsZero() {
			w, err := applyFloor(ospec, cfg, runtimeClass, agents)
			if err != "" {
				refuse("%s", err)
			}
			if w != "" {
				warnings = append(warnings, w)
			}
		}
	}
	if len(reasons) > 0 {
		return Result{}, &Refusal{Reasons: reasons}
	}

	st, err := json.Marshal(Status{
		Version:         cfg.Version,
		Sidecar:         SidecarName,
		Image:           cfg.Image,
		Volumes:         []string{TokenVolume, PolicyVolume, PodInfoVolume},
		AgentContainers: agents,
		PolicyConfigMap: policy,
		RuntimeClass:    runtimeClass,
		Settings:        cfg.Settings(),
	})
	if err != nil {
		return Result{}, fmt.Errorf("inject: encoding status: %w", err)
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationStatus] = string(st)
	return Result{Pod: out, Warnings: warnings}, nil
}

// defaultTokenPrefix names the volume through which the ServiceAccount
// admission plugin mounts the pod's default token into every container. That
// plugin runs before mutating webhooks, so by the time the webhook sees a
// pod whose automountServiceAccountToken was unset, the token is already
// mounted: setting the field to false is not enough.
const defaultTokenPrefix = "kube-api-access-"

// removeDefaultToken removes the ServiceAccount admission plugin's token
// volume and every mount of it.
func removeDefaultToken(spec *corev1.PodSpec) {
	var gone []string
	spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool {
		if !strings.HasPrefix(v.Name, defaultTokenPrefix) || v.Projected == nil {
			return false
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil && s.ServiceAccountToken.Audience == "" {
				gone = append(gone, v.Name)
				return true
			}
		}
		return false
	})
	if len(gone) == 0 {
		return
	}
	unmount := func(cs []corev1.Container) {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return slices.Contains(gone, m.Name) })
			if len(cs[i].VolumeMounts) == 0 {
				cs[i].VolumeMounts = nil
			}
		}
	}
	unmount(spec.Containers)
	unmount(spec.InitContainers)
	if len(spec.Volumes) == 0 {
		spec.Volumes = nil
	}
}

// CheckEphemeral refuses ephemeral containers (kubectl debug) that could
// reach the sidecar's credential in a pod mcpguard injected: one that mounts
// the token, or one that targets the sidecar and so shares its process
// namespace, where /proc/<pid>/root leads to the token. Ephemeral containers
// arrive through the pods/ephemeralcontainers subresource, never on CREATE.
func CheckEphemeral(pod *corev1.Pod, cfg *Config) error {
	if _, injected := pod.Annotations[AnnotationStatus]; !injected {
		return nil
	}
	cred := map[string]bool{TokenVolume: true}
	for _, vol := range pod.Spec.Volumes {
		if carriesAudience(vol, cfg.Audience) {
			cred[vol.Name] = true
		}
	}
	var reasons []string
	for _, ec := range pod.Spec.EphemeralContainers {
		if ec.TargetContainerName == SidecarName {
			reasons = append(reasons, fmt.Sprintf("ephemeral container %q targets %q, whose process namespace leads to its gateway credential", ec.Name, SidecarName))
		}
		for _, m := range ec.VolumeMounts {
			if cred[m.Name] {
				reasons = append(reasons, fmt.Sprintf("ephemeral container %q mounts volume %q, which carries the sidecar's gateway credential (audience %q)", ec.Name, m.Name, cfg.Audience))
			}
		}
	}
	if len(reasons) > 0 {
		return &Refusal{Reasons: reasons}
	}
	return nil
}

// CheckUpdate refuses an update of a pod mcpguard injected that changes the
// sidecar's image: container images are the one part of a pod's containers
// an update may change, and a swapped image would run with the gateway
// credential. Recreate the pod to change the sidecar.
func CheckUpdate(old, pod *corev1.Pod) error {
	if _, injected := old.Annotations[AnnotationStatus]; !injected {
		return nil
	}
	image := func(p *corev1.Pod) string {
		for _, c := range p.Spec.InitContainers {
			if c.Name == SidecarName {
				return c.Image
			}
		}
		return ""
	}
	if was, is := image(old), image(pod); was != is {
		return &Refusal{Reasons: []string{fmt.Sprintf("the image of %q cannot change from %q to %q after injection; recreate the pod", SidecarName, was, is)}}
	}
	return nil
}

// wantsInjection reports whether Mutate would go past the opt-in check, so
// that the webhook reads the namespace only for pods it may inject.
func wantsInjection(pod *corev1.Pod, scope Scope) bool {
	v, ok := pod.Annotations[AnnotationInject]
	return ok && v != "false" || !ok && scope == ScopeNamespace
}

// carriesAudience reports whether vol projects a ServiceAccount token with
// the given audience.
func carriesAudience(vol corev1.Volume, audience string) bool {
	if vol.Projected == nil {
		return false
	}
	for _, s := range vol.Projected.Sources {
		if s.ServiceAccountToken != nil && s.ServiceAccountToken.Audience == audience {
			return true
		}
	}
	return false
}

// setEnv sets c's variable name to value, returning a warning when it
// overrides a different value the user set.
func setEnv(c *corev1.Container, name, value string) string {
	for i := range c.Env {
		e := &c.Env[i]
		if e.Name != name {
			continue
		}
		if e.Value == value && e.ValueFrom == nil {
			return ""
		}
		old := e.Value
		if e.ValueFrom != nil {
			old = "(valueFrom)"
		}
		*e = corev1.EnvVar{Name: name, Value: value}
		return fmt.Sprintf("mcpguard set %s in container %q to %q (was %q) so that MCP traffic goes through the sidecar", name, c.Name, value, old)
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	return ""
}

// placeSidecar puts sidecar into inits: in place if it is already there and
// starts after every mesh container (istio-proxy must be up before the
// sidecar's upstream traffic can leave the pod), else at the end. Istio moves
// its own proxy to the front, so the end is after it in either webhook order.
// Appending keeps the JSON patch to a single "add", which leaves the fields of
// other containers untouched.
func placeSidecar(inits []corev1.Container, sidecar corev1.Container, mesh []string) []corev1.Container {
	lastMesh := -1
	for i, c := range inits {
		if slices.Contains(mesh, c.Name) {
			lastMesh = i
		}
	}
	i := slices.IndexFunc(inits, func(c corev1.Container) bool { return c.Name == SidecarName })
	if i >= 0 && i > lastMesh {
		inits[i] = sidecar
		return inits
	}
	if i >= 0 {
		inits = slices.Delete(inits, i, i+1)
	}
	return append(inits, sidecar)
}

func putVolume(vols []corev1.Volume, v corev1.Volume) []corev1.Volume {
	if i := slices.IndexFunc(vols, func(x corev1.Volume) bool { return x.Name == v.Name }); i >= 0 {
		vols[i] = v
		return vols
	}
	return append(vols, v)
}

// applyFloor raises or refuses a pod whose memory requests are below
// cfg.MemoryFloor. It returns a warning or a refusal reason.
func applyFloor(spec *corev1.PodSpec, cfg *Config, runtimeClass string, agents []string) (warning, refusal string) {
	var total resource.Quantity
	for _, c := range spec.Containers {
		total.Add(c.Resources.Requests[corev1.ResourceMemory])
	}
	for _, c := range spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			total.Add(c.Resources.Requests[corev1.ResourceMemory])
		}
	}
	if total.Cmp(cfg.MemoryFloor) >= 0 {
		return "", ""
	}
	if cfg.MemoryFloorAction == FloorDeny {
		return "", fmt.Sprintf("the pod requests %s of memory in total, below the floor of %s for runtime class %q", total.String(), cfg.MemoryFloor.String(), runtimeClass)
	}
	deficit := cfg.MemoryFloor.DeepCopy()
	deficit.Sub(total)
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == agents[0] })
	c := &spec.Containers[i]
	if c.Resources.Requests == nil {
		c.Resources.Requests = corev1.ResourceList{}
	}
	req := c.Resources.Requests[corev1.ResourceMemory]
	old := req.String()
	req.Add(deficit)
	c.Resources.Requests[corev1.ResourceMemory] = req
	if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && lim.Cmp(req) < 0 {
		c.Resources.Limits[corev1.ResourceMemory] = req.DeepCopy()
	}
	return fmt.Sprintf("mcpguard raised the memory request of container %q from %s to %s: pods with runtime class %q request at least %s in total", c.Name, old, req.String(), runtimeClass, cfg.MemoryFloor.String()), ""
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// The sidecar and its volumes spell out every field the API server would
// default, so that a reinvoked webhook, which sees the defaulted pod,
// computes an empty patch.
const (
	defaultMode        int32 = 0o644
	terminationLogPath       = "/dev/termination-log"
)

func sidecarContainer(cfg *Config, policy string) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	yes, no := true, false
	args := []string{"proxy",
		"--listen", "127.0.0.1:" + strconv.Itoa(int(cfg.ListenPort)),
		"--admin-listen", ":" + strconv.Itoa(int(cfg.AdminPort)),
		"--upstream", cfg.Upstream,
	}
	if cfg.UpstreamHost != "" {
		args = append(args, "--upstream-host", cfg.UpstreamHost)
	}
	args = append(args,
		"--policy", PolicyDir+"/"+cfg.PolicyKey,
		"--upstream-token-file", TokenDir+"/"+TokenFile,
	)
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path:   path,
				Port:   intstr.FromInt32(cfg.AdminPort),
				Scheme: corev1.URISchemeHTTP,
			}},
			TimeoutSeconds:   1,
			PeriodSeconds:    period,
			SuccessThreshold: 1,
			FailureThreshold: failures,
		}
	}
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
	}
	return corev1.Container{
		Name:            SidecarName,
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{SidecarCommand},
		Args:            args,
		Env: []corev1.EnvVar{
			{Name: "MCPGUARD_POD_NAME", ValueFrom: field("metadata.name")},
			{Name: "MCPGUARD_POD_NAMESPACE", ValueFrom: field("metadata.namespace")},
			{Name: "MCPGUARD_SERVICE_ACCOUNT", ValueFrom: field("spec.serviceAccountName")},
			{Name: "OTEL_RESOURCE_ATTRIBUTES", Value: "k8s.pod.name=$(MCPGUARD_POD_NAME),k8s.namespace.name=$(MCPGUARD_POD_NAMESPACE)"},
		},
		Ports: []corev1.ContainerPort{{
			Name:          "mcpguard-admin",
			ContainerPort: cfg.AdminPort,
			Protocol:      corev1.ProtocolTCP,
		}},
		Resources:     *cfg.Resources.DeepCopy(),
		RestartPolicy: &always,
		// The startup probe holds the agent containers back until the proxy
		// is ready (native sidecars, KEP-753).
		StartupProbe:   probe("/readyz", 1, 120),
		ReadinessProbe: probe("/readyz", 5, 3),
		LivenessProbe:  probe("/healthz", 10, 3),
		VolumeMounts: []corev1.VolumeMount{
			{Name: TokenVolume, MountPath: TokenDir, ReadOnly: true},
			{Name: PolicyVolume, MountPath: PolicyDir, ReadOnly: true},
			{Name: PodInfoVolume, MountPath: PodInfoDir, ReadOnly: true},
		},
		TerminationMessagePath:   terminationLogPath,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// restricted-v2: no fixed runAsUser, so OpenShift picks one from the
		// namespace's range.
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             &yes,
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

func sidecarVolumes(cfg *Config, policy string) []corev1.Volume {
	mode := defaultMode
	exp := cfg.TokenExpirationSeconds
	return []corev1.Volume{
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience:          cfg.Audience,
				ExpirationSeconds: &exp,
				Path:              TokenFile,
			}}},
			DefaultMode: &mode,
		}}},
		// A whole-directory mount, not a subPath: only then does the
		// kubelet update the file when the ConfigMap changes.
		{Name: PolicyVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: policy},
			DefaultMode:          &mode,
		}}},
		{Name: PodInfoVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "labels",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.labels"},
			}},
			DefaultMode: &mode,
		}}},
	}
}
