package manifests_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	authorinov1beta3 "github.com/kuadrant/authorino/api/v1beta3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"mcpguard.dev/mcpguard/inject"
)

// gatewayAudiences are the token audiences the gateway's AuthPolicy accepts.
func gatewayAudiences(t *testing.T) []string {
	t.Helper()
	objs := find(t, "policies/gateway", "AuthPolicy", "")
	if len(objs) != 1 {
		t.Fatalf("want one AuthPolicy in policies/gateway, found %d", len(objs))
	}
	var ap struct {
		Spec struct {
			Rules struct {
				Authentication map[string]struct {
					KubernetesTokenReview *struct {
						Audiences []string `json:"audiences"`
					} `json:"kubernetesTokenReview"`
				} `json:"authentication"`
			} `json:"rules"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(objs[0].JSON, &ap); err != nil {
		t.Fatal(err)
	}
	var auds []string
	for name, a := range ap.Spec.Rules.Authentication {
		if a.KubernetesTokenReview == nil {
			t.Errorf("AuthPolicy authentication %q is not a kubernetesTokenReview: another credential would let agents past the sidecar", name)
			continue
		}
		if len(a.KubernetesTokenReview.Audiences) == 0 {
			t.Errorf("AuthPolicy authentication %q has no audiences: Authorino would accept tokens for the gateway's host name", name)
		}
		auds = append(auds, a.KubernetesTokenReview.Audiences...)
	}
	return auds
}

// TestGatewayAuthPolicy: the header-level rules admit the design's tools by
// their prefixed names and nothing else.
func TestGatewayAuthPolicy(t *testing.T) {
	objs := find(t, "policies/gateway", "AuthPolicy", "")
	var ap struct {
		Spec struct {
			TargetRef struct {
				Group, Kind, Name string
				SectionName       string `json:"sectionName"`
			} `json:"targetRef"`
			Rules struct {
				Authorization map[string]struct {
					PatternMatching struct {
						Patterns []struct {
							Predicate string `json:"predicate"`
						} `json:"patterns"`
					} `json:"patternMatching"`
				} `json:"authorization"`
			} `json:"rules"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(objs[0].JSON, &ap); err != nil {
		t.Fatal(err)
	}
	// The agents' listener only: the broker discovers tools through "mcps"
	// without an agent's token.
	if objs[0].Namespace != "gateway-system" || ap.Spec.TargetRef.Kind != "Gateway" || ap.Spec.TargetRef.Name != "mcp-gateway" || ap.Spec.TargetRef.SectionName != "mcp" {
		t.Errorf("AuthPolicy %s targets %+v; want listener mcp of the Gateway gateway-system/mcp-gateway", objs[0], ap.Spec.TargetRef)
	}
	rule, ok := ap.Spec.Rules.Authorization["approved-tools"]
	if !ok || len(rule.PatternMatching.Patterns) != 1 {
		t.Fatalf("no approved-tools rule with one pattern")
	}
	env, err := cel.NewEnv(cel.Variable("request", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(rule.PatternMatching.Patterns[0].Predicate)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	for tool, want := range map[string]bool{
		"fetch_url": true, "weather_fetch_url": true, "get_time": true, "fs_read_file": true,
		"run_command": false, "weather_run_command": false, "fetch_url2": false, "Fetch_url": false,
		"evil-fetch_url": false, "fetch_url\u200b": false, "": false,
	} {
		out, _, err := prg.Eval(map[string]any{"request": map[string]any{"headers": map[string]any{"x-mcp-toolname": tool}}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Value() != want {
			t.Errorf("x-mcp-toolname %q allowed = %v, want %v", tool, out.Value(), want)
		}
	}
}

// TestPolicyConfigMap: the generated ConfigMap is the shipped policy, under
// the name and key the webhook mounts by default.
func TestPolicyConfigMap(t *testing.T) {
	for _, dir := range []string{"policies", "agents"} {
		var cm corev1.ConfigMap
		one(t, dir, "ConfigMap", "mcpguard-policy", &cm)
		want, err := os.ReadFile("policies/approved-apis.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["policy.yaml"] != string(want) {
			t.Errorf("%s: ConfigMap mcpguard-policy key policy.yaml is not policies/approved-apis.yaml", dir)
		}
		cfg := inject.Config{}.WithDefaults()
		if cm.Name != cfg.PolicyConfigMap {
			t.Errorf("%s: ConfigMap %q, but the webhook's default is %q", dir, cm.Name, cfg.PolicyConfigMap)
		}
		if _, ok := cm.Data[cfg.PolicyKey]; !ok {
			t.Errorf("%s: no key %q", dir, cfg.PolicyKey)
		}
	}
	if objs := find(t, "agents", "ConfigMap", "mcpguard-policy"); len(objs) == 1 && objs[0].Namespace != "agents" {
		t.Errorf("agents: policy ConfigMap in %q", objs[0].Namespace)
	}
}

// TestEgress: REGISTRY_ONLY in both namespaces, the ServiceEntry's hosts are
// the policy's approved hosts and are not exported to agents, and the
// NetworkPolicy lets agents reach only DNS, the gateway and istiod.
func TestEgress(t *testing.T) {
	for _, dir := range []string{"istio/agents", "istio/servers", "agents"} {
		var sc istionetworking.Sidecar
		one(t, dir, "Sidecar", "default", &sc)
		if sc.Spec.GetOutboundTrafficPolicy().GetMode() != 0 || !strings.Contains(string(find(t, dir, "Sidecar", "default")[0].JSON), `"REGISTRY_ONLY"`) {
			t.Errorf("%s: Sidecar is not REGISTRY_ONLY", dir)
		}
		if sc.Spec.GetWorkloadSelector() != nil {
			t.Errorf("%s: the namespace-wide Sidecar must have no workloadSelector", dir)
		}
	}
	var agentSC istionetworking.Sidecar
	one(t, "istio/agents", "Sidecar", "default", &agentSC)
	var agentHosts []string
	for _, e := range agentSC.Spec.GetEgress() {
		agentHosts = append(agentHosts, e.GetHosts()...)
	}
	if want := []string{"gateway-system/*", "./mcp.127-0-0-1.sslip.io"}; !slices.Equal(agentHosts, want) {
		t.Errorf("agents' Sidecar egress hosts %q, want only the gateway %q", agentHosts, want)
	}
	// The gateway's public host name resolves, in the agents' namespace only,
	// to the gateway Service the webhook's --upstream names.
	var gw istionetworking.ServiceEntry
	one(t, "istio/agents", "ServiceEntry", "mcp-gateway-public-host", &gw)
	var wh appsv1.Deployment
	one(t, "base", "Deployment", webhookName, &wh)
	args := expandArgs(wh.Spec.Template.Spec.Containers[0])
	if !slices.Equal(gw.Spec.GetHosts(), []string{flagValue(args, "upstream-host")}) || !slices.Equal(gw.Spec.GetExportTo(), []string{"."}) {
		t.Errorf("gateway ServiceEntry hosts %q exportTo %q, want [%s] exported to its namespace only", gw.Spec.GetHosts(), gw.Spec.GetExportTo(), flagValue(args, "upstream-host"))
	}
	if eps := gw.Spec.GetEndpoints(); len(eps) != 1 || !strings.Contains(flagValue(args, "upstream"), "//"+eps[0].GetAddress()+":") {
		t.Errorf("gateway ServiceEntry endpoints %v do not name the host of --upstream %s", eps, flagValue(args, "upstream"))
	}
	if ports := gw.Spec.GetPorts(); len(ports) != 1 || !strings.Contains(flagValue(args, "upstream"), fmt.Sprintf(":%d/", ports[0].GetNumber())) {
		t.Errorf("gateway ServiceEntry ports %v do not match --upstream %s", ports, flagValue(args, "upstream"))
	}

	var se istionetworking.ServiceEntry
	one(t, "istio/servers", "ServiceEntry", "approved-apis", &se)
	if !slices.Equal(se.Spec.GetExportTo(), []string{"."}) {
		t.Errorf("ServiceEntry exportTo %q: export it to its own namespace only, or agents learn the hosts", se.Spec.GetExportTo())
	}
	hosts := slices.Sorted(slices.Values(se.Spec.GetHosts()))
	policyHosts := approvedHosts(t)
	if !slices.Equal(hosts, policyHosts) {
		t.Errorf("ServiceEntry hosts %q differ from the policy's fetch_url hosts %q", hosts, policyHosts)
	}
	for _, p := range se.Spec.GetPorts() {
		if p.GetNumber() != 443 {
			t.Errorf("ServiceEntry port %d: the policy allows HTTPS on 443 only", p.GetNumber())
		}
	}

	var np networkingv1.NetworkPolicy
	one(t, "istio/agents", "NetworkPolicy", "mcpguard-agent-egress", &np)
	if len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) != 0 || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}) {
		t.Error("NetworkPolicy must select every pod of the namespace, for egress")
	}
	for i, r := range np.Spec.Egress {
		if len(r.To) == 0 || len(r.Ports) == 0 {
			t.Errorf("egress rule %d allows every destination or every port", i)
		}
		for _, peer := range r.To {
			if peer.IPBlock != nil {
				t.Errorf("egress rule %d allows an IP block %s: agents reach the outside only through the gateway", i, peer.IPBlock.CIDR)
			}
		}
	}
	var ef egressFirewall
	one(t, "istio/egressfirewall", "EgressFirewall", "default", &ef)
	last := ef.Spec.Egress[len(ef.Spec.Egress)-1]
	if last.Type != "Deny" {
		t.Error("EgressFirewall does not end in Deny")
	}
}

// approvedHosts reads the fetch_url hosts out of the shipped ToolPolicy,
// loosely (the policy's own package validates its format).
func approvedHosts(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("policies/approved-apis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var hosts []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if h, ok := v["hosts"].([]any); ok {
				for _, x := range h {
					hosts = append(hosts, fmt.Sprint(x))
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	if len(hosts) == 0 {
		t.Fatal("no hosts found in policies/approved-apis.yaml")
	}
	return hosts
}

// TestBodyCheck: the optional gateway body check never sees truncated JSON,
// and its AuthorizationPolicy names the provider that is shipped.
func TestBodyCheck(t *testing.T) {
	data, err := os.ReadFile("istio/sail/ext-authz-provider.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := extAuthzProvider(t, "istio/sail/ext-authz-provider.yaml", data)
	var ap istiosecurity.AuthorizationPolicy
	one(t, "istio/body-check", "AuthorizationPolicy", "mcpguard-body-check", &ap)
	if ap.Spec.GetAction().String() != "CUSTOM" || ap.Spec.GetProvider().GetName() != p.GetName() {
		t.Errorf("AuthorizationPolicy is %s with provider %q, want CUSTOM with %q", ap.Spec.GetAction(), ap.Spec.GetProvider().GetName(), p.GetName())
	}
	var ac struct {
		Spec struct {
			Hosts []string `json:"hosts"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(find(t, "istio/body-check", "AuthConfig", "")[0].JSON, &ac); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ac.Spec.Hosts, "mcp.127-0-0-1.sslip.io") {
		t.Errorf("AuthConfig hosts %q do not include the gateway's host", ac.Spec.Hosts)
	}
}

func validateExtAuthzProvider(t *testing.T, path string, data []byte) {
	extAuthzProvider(t, path, data)
}

func extAuthzProvider(t *testing.T, path string, data []byte) *meshv1alpha1.MeshConfig_ExtensionProvider {
	t.Helper()
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var p meshv1alpha1.MeshConfig_ExtensionProvider
	if err := protojson.Unmarshal(js, &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	g := p.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("%s: not an envoyExtAuthzGrpc provider", path)
	}
	body := g.GetIncludeRequestBodyInCheck()
	switch {
	case body == nil:
		t.Errorf("%s: no includeRequestBodyInCheck: the check would not see the body", path)
	case body.GetAllowPartialMessage():
		t.Errorf("%s: allowPartialMessage true hands the policy truncated JSON; Envoy must answer 413 instead", path)
	case body.GetMaxRequestBytes() <= 8192:
		t.Errorf("%s: maxRequestBytes %d: MCP tool calls routinely exceed the design's 8 KiB", path, body.GetMaxRequestBytes())
	}
	if g.GetFailOpen() {
		t.Errorf("%s: failOpen", path)
	}
	return &p
}

// meshConfig decodes Istio's MeshConfig strictly (protojson rejects unknown
// fields) and checks the patch spells REGISTRY_ONLY out: it is the enum's
// zero value, so an absent mode would decode the same.
func meshConfig(t *testing.T, path string, raw json.RawMessage) *meshv1alpha1.MeshConfig {
	t.Helper()
	var mc meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(raw, &mc); err != nil {
		t.Errorf("%s: meshConfig: %v", path, err)
		return nil
	}
	var loose struct {
		OutboundTrafficPolicy struct {
			Mode string `json:"mode"`
		} `json:"outboundTrafficPolicy"`
	}
	_ = json.Unmarshal(raw, &loose)
	if loose.OutboundTrafficPolicy.Mode != "REGISTRY_ONLY" {
		t.Errorf("%s: outboundTrafficPolicy.mode %q, want REGISTRY_ONLY written out", path, loose.OutboundTrafficPolicy.Mode)
	}
	return &mc
}

// TestSandboxedAgent: the example agent opts in, asks for Kata, carries no
// Kubernetes credential and does not fake the Kata VM size in its requests.
func TestSandboxedAgent(t *testing.T) {
	var d appsv1.Deployment
	one(t, "osc/agent", "Deployment", "weather-agent", &d)
	tpl := d.Spec.Template
	if tpl.Annotations[inject.AnnotationInject] != "true" {
		t.Errorf("agent is not annotated %s: \"true\"", inject.AnnotationInject)
	}
	rc := tpl.Annotations[inject.AnnotationRuntimeClass]
	if !slices.Contains(inject.Config{}.WithDefaults().RuntimeClasses, rc) {
		t.Errorf("runtime class %q is not one the webhook accepts by default", rc)
	}
	if tpl.Spec.RuntimeClassName != nil {
		t.Error("spec.runtimeClassName set by hand: the annotation asks the webhook, and a mismatch is refused")
	}
	if tpl.Spec.AutomountServiceAccountToken == nil || *tpl.Spec.AutomountServiceAccountToken {
		t.Error("agent pods must not automount a ServiceAccount token (the webhook refuses them)")
	}
	if tpl.Spec.ShareProcessNamespace != nil && *tpl.Spec.ShareProcessNamespace {
		t.Error("shareProcessNamespace would expose the sidecar's token")
	}
	checkRestricted(t, "weather-agent", tpl.Spec)
	for _, c := range tpl.Spec.Containers {
		if m := c.Resources.Requests.Memory(); m.Cmp(resourceMust("1Gi")) >= 0 {
			t.Errorf("%s requests %s of memory: Kata's 2Gi is the guest VM's default size, not a request", c.Name, m)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s has no memory limit; Kata sizes the guest from limits", c.Name)
		}
	}
}

func resourceMust(s string) resource.Quantity { return resource.MustParse(s) }

// TestBodyCheckRego evaluates the AuthConfig's Rego the way Authorino does:
// Rego v0, wrapped in a package of its own, queried for allow, with the raw
// body as input.request.body. A coarse net, so the cases are the obvious
// ones; the sidecar's canonicalising policy decides the rest.
func TestBodyCheckRego(t *testing.T) {
	var ac authorinov1beta3.AuthConfig
	one(t, "istio/body-check", "AuthConfig", "mcpguard-body-check", &ac)
	opa := ac.Spec.Authorization["tool-arguments"].Opa
	if opa == nil || opa.Rego == "" {
		t.Fatal("no inline Rego in authorization tool-arguments")
	}
	ctx := context.Background()
	q, err := rego.New(
		rego.Query("data.mcpguard_body_check.allow"),
		rego.Module("body-check.rego", "package mcpguard_body_check\n"+opa.Rego),
		rego.SetRegoVersion(ast.RegoV0),
	).PrepareForEval(ctx)
	if err != nil {
		t.Fatalf("the Rego does not compile as Authorino's v0: %v", err)
	}
	call := func(name string, args string) string {
		return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `}}`
	}
	for _, c := range []struct {
		body  string
		allow bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, true},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, true},
		{call("get_time", `{}`), true},
		{call("weather_fetch_url", `{"url":"https://api.weather.gov/points/1,2"}`), true},
		{call("fetch_url", `{"url":"https://example.com"}`), true},
		{call("read_file", `{"path":"/workspace/notes.md"}`), true},
		{call("fetch_url", `{"url":"https://malicious.com"}`), false},
		{call("fetch_url", `{"url":"https://api.weather.gov.evil.com/"}`), false},
		{call("fetch_url", `{"url":"http://169.254.169.254/"}`), false},
		{call("read_file", `{"path":"/etc/passwd"}`), false},
		{call("run_command", `{"cmd":"id"}`), false},
		{call("weather_run_command", `{"cmd":"id"}`), false},
		{`not json`, false},
		{`[]`, false},
		{`[` + call("get_time", `{}`) + `,` + call("fetch_url", `{"url":"https://api.github.com/"}`) + `]`, true},
		{`[` + call("get_time", `{}`) + `,` + call("run_command", `{"cmd":"id"}`) + `]`, false},
		{call("read_file", `{"path":"/workspace/../etc/passwd"}`), false},
	} {
		rs, err := q.Eval(ctx, rego.EvalInput(map[string]any{"request": map[string]any{"body": c.body}}))
		if err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		got := rs.Allowed()
		if got != c.allow {
			t.Errorf("body %s: allow = %v, want %v", c.body, got, c.allow)
		}
	}
}
