package manifests_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The scripts are tested offline: a fake kubectl on PATH records every
// invocation, keeps a copy of every directory passed to `apply -k` (the
// scripts delete their temporary kustomizations on exit) and answers the few
// queries the scripts make. demo-complete.sh also gets a fake agent pod whose
// "sidecar" answers like mcpguard's; a real cluster run is still needed to
// see the real layers.
var scripts = []string{"install.sh", "setup-namespaces.sh", "test-policy.sh", "demo-complete.sh"}

const fakeKubectl = `#!/usr/bin/env bash
set -euo pipefail
n=$(( $(ls "$FAKE_DIR/calls" | wc -l) + 1 ))
printf '%s\0' "$@" > "$FAKE_DIR/calls/$(printf %03d "$n")"
args=" $* "
case "$args" in
  *" apply "*-k*)
    prev=""
    for a in "$@"; do
      if [ "$prev" = -k ]; then
        mkdir -p "$FAKE_DIR/applied/$n"
        cp -r "$a"/. "$FAKE_DIR/applied/$n/"
        (cd "$a" && pwd -P) > "$FAKE_DIR/applied/$n.from"
      fi
      prev=$a
    done ;;
  *" api-resources "*route.openshift.io*) [ "${FAKE_OPENSHIFT:-}" = 1 ] && echo routes.route.openshift.io ;;
  *" api-resources "*k8s.ovn.org*) [ "${FAKE_OPENSHIFT:-}" = 1 ] && echo egressfirewalls.k8s.ovn.org ;;
  *" get istio default "*) printf '%s' "${FAKE_PROVIDERS:-}" ;;
  *" get deployment weather-agent -o go-template="*) echo -n "app.kubernetes.io/name=weather-agent," ;;
  *" get pods "*) echo weather-agent-abc ;;
  *"{{or .spec.runtimeClassName"*) echo -n kata ;;
  *"{{.spec.nodeName}}"*) echo -n node-1 ;;
  *" get node node-1 "*) echo -n 5.14.0-427.el9.x86_64 ;;
  *"{{range .spec.initContainers}}"*) echo -n Always ;;
  *" exec "*)
    # The fake agent pod. Everything after "--" runs "in the container".
    while [ "$1" != -- ]; do shift; done; shift
    cmd=" $* "
    case "$cmd" in
      *MCP_GATEWAY_URL*) echo -n http://127.0.0.1:8081/mcp ;;
      *"uname -r"*) echo 5.14.0-kata ;;
      *docker.sock*) echo 0 ;;
      *serviceaccount/token*) echo 0 ;;
      *"127.0.0.1:8081/mcp"*)
        # The fake sidecar: 403 with a rule for what the policy denies.
        body=${cmd#*--data-binary }
        deny=""
        case "$body" in
          *malicious.com*) [ "${FAKE_LEAK:-}" = 1 ] || deny=fetch_url/approved-hosts ;;
          *169.254.169.254*|*0xA9FEA9FE*) deny=fetch_url/deny-ip-classes ;;
          *anything*) deny=fetch_url/httpbin-no-anything ;;
          *passwd*) deny=read_file/workspace-only ;;
          *run_command*) deny=run_command ;;
        esac
        case "$body" in
          *'"method":"initialize"'*) printf 'HTTP/1.1 200 OK\r\nMcp-Session-Id: s-1\r\nContent-Type: application/json\r\n\r\n{"jsonrpc":"2.0","id":1,"result":{}}' ;;
          *notifications/initialized*) printf 'HTTP/1.1 202 Accepted\r\n\r\n' ;;
          *)
            if [ -n "$deny" ]; then
              printf 'HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\r\n{"jsonrpc":"2.0","id":2,"error":{"code":-32001,"message":"denied","data":{"rule":"%s","reason":"no"}}}' "$deny"
            else
              printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: message\ndata: {"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"ok"}]}}\n\n'
            fi ;;
        esac ;;
      *mcp-gateway-istio*) echo -n 401 ;;
      *curl*) exit 7 ;; # direct egress: blocked
      *) echo "fake kubectl: unexpected exec: $*" >&2; exit 99 ;;
    esac ;;
esac
`

// fakeCluster is a directory with the fake kubectl and its records.
type fakeCluster struct {
	dir string
	env []string
}

func newFakeCluster(t *testing.T, env ...string) *fakeCluster {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"bin", "calls", "applied"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "kubectl"), []byte(fakeKubectl), 0o755); err != nil {
		t.Fatal(err)
	}
	return &fakeCluster{dir: dir, env: append([]string{
		"FAKE_DIR=" + dir,
		// Only the fake: never a real cluster CLI, whatever is installed.
		"PATH=" + filepath.Join(dir, "bin") + ":/usr/bin:/bin",
		"HOME=" + dir,
	}, env...)}
}

// run runs a script with the fake cluster and returns its exit code and
// combined output.
func (f *fakeCluster) run(t *testing.T, script string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "scripts", script)}, args...)...)
	cmd.Env = f.env
	cmd.Stdin = nil // not a terminal: prompts must not wait
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// calls returns every kubectl invocation, each as its argument list.
func (f *fakeCluster) calls(t *testing.T) [][]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.dir, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(f.dir, "calls", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00"))
	}
	return out
}

// applied renders every directory passed to `apply -k`, in call order.
func (f *fakeCluster) applied(t *testing.T) [][]object {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.dir, "applied"))
	if err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	var out [][]object
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(f.dir, "applied", e.Name())
		rebaseResources(t, dir)
		m, err := k.Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			t.Fatalf("rendering what the script applied: %v", err)
		}
		var objs []object
		for _, r := range m.Resources() {
			js, err := r.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			gvk := r.GetGvk()
			o := object{Source: "applied by script", Name: r.GetName(), Namespace: r.GetNamespace(), JSON: js}
			o.GVK.Group, o.GVK.Version, o.GVK.Kind = gvk.Group, gvk.Version, gvk.Kind
			objs = append(objs, o)
		}
		out = append(out, objs)
	}
	return out
}

// rebaseResources rewrites the relative resource paths of the copied
// kustomization in dir so they name the same directories as they did from
// where the script wrote it (recorded in dir.from).
func rebaseResources(t *testing.T, dir string) {
	t.Helper()
	from, err := os.ReadFile(dir + ".from")
	if err != nil {
		t.Fatal(err)
	}
	orig := strings.TrimSpace(string(from))
	path := filepath.Join(dir, "kustomization.yaml")
	k := readKustomization(t, path)
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range k.Resources {
		if filepath.IsAbs(r) {
			t.Errorf("%s: resource %q is absolute; kustomize refuses absolute roots", path, r)
			continue
		}
		target := filepath.Join(orig, r)
		if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
			continue // a file of the kustomization itself
		}
		rel, err := filepath.Rel(abs, target)
		if err != nil {
			t.Fatal(err)
		}
		k.Resources[i] = rel
	}
	data, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func hasCall(calls [][]string, words ...string) bool {
	return slices.ContainsFunc(calls, func(c []string) bool {
		for _, w := range words {
			if !slices.ContainsFunc(c, func(a string) bool { return a == w || strings.HasSuffix(a, w) }) {
				return false
			}
		}
		return true
	})
}

func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		if testing.Short() {
			t.Skip("-short: shellcheck is not installed")
		}
		t.Fatal("shellcheck is not installed: run scripts/test.sh, or apt-get install -y shellcheck")
	}
	// Every shell script in the repository, not only the shipped ones: the
	// test, fuzz and bench scripts are what CI and users run.
	all, err := filepath.Glob(filepath.Join("..", "scripts", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob(filepath.Join("..", "bench", "*.sh"))
	all = append(all, more...)
	all = append(all, filepath.Join("..", ".ci", "run"))
	if len(all) < len(scripts)+3 {
		t.Fatalf("found only %d scripts to check: %v", len(all), all)
	}
	args := append([]string{"--shell=bash", "--severity=style"}, all...)
	if out, err := exec.Command(sc, args...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

func TestScriptsUsage(t *testing.T) {
	for _, s := range scripts {
		f := newFakeCluster(t)
		if code, out := f.run(t, s, "--help"); code != 0 || !strings.HasPrefix(out, "Usage: scripts/"+s) {
			t.Errorf("%s --help: exit %d\n%s", s, code, out)
		}
		if code, out := f.run(t, s, "--no-such-option"); code != 2 || !strings.Contains(out, "--no-such-option") {
			t.Errorf("%s --no-such-option: exit %d, want 2 naming the option\n%s", s, code, out)
		}
		if len(f.calls(t)) != 0 {
			t.Errorf("%s called kubectl while only parsing arguments: %q", s, f.calls(t))
		}
		data, err := os.ReadFile(filepath.Join("..", "scripts", s))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "#!/usr/bin/env bash\n") || !strings.Contains(string(data), "\nset -euo pipefail\n") {
			t.Errorf("%s: want #!/usr/bin/env bash and set -euo pipefail", s)
		}
		if fi, err := os.Stat(filepath.Join("..", "scripts", s)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
	bad := map[string][][]string{
		"install.sh":          {{"--platform", "gke"}, {"--image", "not an image"}, {"--timeout", "soon"}, {"--kata"}, {"--image"}},
		"setup-namespaces.sh": {{}, {"Bad_Name"}, {"kube-system"}, {"mcpguard-system"}, {"--policy", "/does/not/exist", "team-a"}, {"--policy"}},
		"test-policy.sh":      {{"--policy", "/does/not/exist"}, {"--prefix", "Bad-Prefix"}},
		"demo-complete.sh":    {{"--namespace", "Bad"}, {"--timeout", "1 hour"}, {"--prefix", "-x"}},
	}
	for s, cases := range bad {
		for _, args := range cases {
			f := newFakeCluster(t)
			if code, out := f.run(t, s, args...); code != 2 {
				t.Errorf("%s %q: exit %d, want 2\n%s", s, args, code, out)
			}
			if s != "demo-complete.sh" && len(f.calls(t)) != 0 {
				t.Errorf("%s %q changed the cluster before refusing: %q", s, args, f.calls(t))
			}
		}
	}
	// No CLI at all: a clear message, not a "command not found" halfway.
	f := newFakeCluster(t)
	f.env = []string{"PATH=/usr/bin:/bin", "HOME=" + f.dir}
	if _, err := exec.LookPath("kubectl"); err == nil {
		t.Log("a kubectl is installed on this machine; the no-CLI case is checked only where none is")
	} else if code, out := f.run(t, "install.sh"); code != 2 || !strings.Contains(out, "neither oc nor kubectl") {
		t.Errorf("install.sh without a CLI: exit %d\n%s", code, out)
	}
}

func TestInstallScript(t *testing.T) {
	t.Run("openshift detected", func(t *testing.T) {
		f := newFakeCluster(t, "FAKE_OPENSHIFT=1")
		if code, out := f.run(t, "install.sh"); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		calls := f.calls(t)
		if !hasCall(calls, "apply", "-k", "/manifests/overlays/openshift") {
			t.Errorf("did not apply the openshift overlay: %q", calls)
		}
		if !hasCall(calls, "rollout", "status", "deployment/mcpguard-webhook") {
			t.Errorf("did not wait for the webhook: %q", calls)
		}
		if hasCall(calls, "patch") || hasCall(calls, "-f") {
			t.Errorf("changed more than the webhook without being asked: %q", calls)
		}
	})
	for _, image := range []string{"quay.io/example/mcpguard:v9.9.9", "registry.example:5000/team/mcpguard@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} {
		t.Run("image override, dry run, "+image, func(t *testing.T) { installImage(t, image) })
	}
	t.Run("body check appends the provider", func(t *testing.T) {
		existing := `{"spec":{"values":{"meshConfig":{"extensionProviders":[{"name":"otel","opentelemetry":{"service":"otel.svc","port":4317}}]}}}}`
		f := newFakeCluster(t, "FAKE_PROVIDERS=otel")
		if code, out := f.run(t, "install.sh", "--platform", "openshift", "--body-check"); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		patch := patchArg(t, f.calls(t), "json")
		pj, err := yaml.YAMLToJSON([]byte(patch))
		if err != nil {
			t.Fatalf("patch is not YAML: %v\n%s", err, patch)
		}
		p, err := jsonpatch.DecodePatch(pj)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Apply([]byte(existing))
		if err != nil {
			t.Fatalf("the JSON patch does not apply to an Istio resource with a provider: %v", err)
		}
		providers := checkProviders(t, got)
		if !slices.Equal(providers, []string{"otel", "mcpguard-authorino"}) {
			t.Errorf("providers after the patch %q: the existing one must be kept", providers)
		}
		if !hasCall(f.calls(t), "apply", "-k", "/manifests/istio/body-check") {
			t.Error("did not apply the body check")
		}
	})
	t.Run("body check creates the list", func(t *testing.T) {
		f := newFakeCluster(t)
		if code, out := f.run(t, "install.sh", "--platform", "openshift", "--body-check"); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		patch := patchArg(t, f.calls(t), "merge")
		pj, err := yaml.YAMLToJSON([]byte(patch))
		if err != nil {
			t.Fatalf("patch is not YAML: %v\n%s", err, patch)
		}
		got, err := jsonpatch.MergePatch([]byte(`{"spec":{"version":"v1.27.0"}}`), pj)
		if err != nil {
			t.Fatal(err)
		}
		if providers := checkProviders(t, got); !slices.Equal(providers, []string{"mcpguard-authorino"}) {
			t.Errorf("providers %q", providers)
		}
	})
	t.Run("body check is idempotent", func(t *testing.T) {
		f := newFakeCluster(t, "FAKE_PROVIDERS=otel mcpguard-authorino")
		if code, out := f.run(t, "install.sh", "--platform", "openshift", "--body-check"); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if hasCall(f.calls(t), "patch") {
			t.Errorf("patched although the provider is there: %q", f.calls(t))
		}
	})
	t.Run("registry only and kata", func(t *testing.T) {
		f := newFakeCluster(t)
		if code, out := f.run(t, "install.sh", "--platform", "openshift", "--mesh-registry-only", "--kata", "--yes"); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		calls := f.calls(t)
		if !hasCall(calls, "patch", "istio", "default", "--type=merge", "/manifests/istio/sail/registry-only.yaml") {
			t.Errorf("no merge patch of the cluster-scoped Istio resource: %q", calls)
		}
		for _, c := range calls {
			if slices.Contains(c, "patch") && (slices.Contains(c, "-n") || slices.Contains(c, "istio-system")) {
				t.Errorf("the Istio resource is cluster-scoped; %q names a namespace", c)
			}
		}
		if !hasCall(calls, "apply", "-f", "/manifests/osc/kataconfig.yaml") || !hasCall(calls, "apply", "-k", "/manifests/istio/servers") {
			t.Errorf("KataConfig or ServiceEntry not applied: %q", calls)
		}
	})
}

// installImage runs install.sh --image IMAGE --dry-run and checks that the
// webhook and the sidecar both get IMAGE.
func installImage(t *testing.T, image string) {
	t.Helper()
	f := newFakeCluster(t)
	if code, out := f.run(t, "install.sh", "--platform", "kubernetes", "--image", image, "--dry-run"); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, c := range f.calls(t) {
		if slices.Contains(c, "apply") && !slices.Contains(c, "--dry-run=server") {
			t.Errorf("--dry-run, but %q", c)
		}
		if slices.Contains(c, "rollout") {
			t.Errorf("waited for a rollout in a dry run: %q", c)
		}
	}
	applied := f.applied(t)
	if len(applied) != 1 {
		t.Fatalf("applied %d kustomizations, want 1", len(applied))
	}
	var d appsv1.Deployment
	for _, o := range applied[0] {
		if err := validateObject(t, o); err != nil {
			t.Errorf("%s: %v", o, err)
		}
		if o.GVK.Kind == "Deployment" {
			if err := strict(o.JSON, &d); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != image || flagValue(expandArgs(c), "image") != image {
		t.Errorf("image %q, sidecar --image %q; want both %q", c.Image, flagValue(expandArgs(c), "image"), image)
	}
	if flagValue(expandArgs(c), "dns-names") == "" {
		t.Error("--platform kubernetes did not install the own-CA overlay")
	}
}

// patchArg returns the -p value of the one `patch --type=TYPE` call.
func patchArg(t *testing.T, calls [][]string, typ string) string {
	t.Helper()
	for _, c := range calls {
		if slices.Contains(c, "patch") && slices.Contains(c, "--type="+typ) {
			if i := slices.Index(c, "-p"); i >= 0 && i+1 < len(c) {
				return c[i+1]
			}
		}
	}
	t.Fatalf("no patch --type=%s -p in %q", typ, calls)
	return ""
}

// checkProviders decodes the patched Istio resource's mesh config strictly
// and returns the providers' names.
func checkProviders(t *testing.T, istio []byte) []string {
	t.Helper()
	var doc struct {
		Spec struct {
			Values struct {
				MeshConfig json.RawMessage `json:"meshConfig"`
			} `json:"values"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(istio, &doc); err != nil {
		t.Fatal(err)
	}
	var mc meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(doc.Spec.Values.MeshConfig, &mc); err != nil {
		t.Fatalf("mesh config after the patch: %v\n%s", err, doc.Spec.Values.MeshConfig)
	}
	var names []string
	for _, p := range mc.GetExtensionProviders() {
		names = append(names, p.GetName())
		if p.GetName() == "mcpguard-authorino" && p.GetEnvoyExtAuthzGrpc().GetIncludeRequestBodyInCheck().GetAllowPartialMessage() {
			t.Error("the appended provider allows partial messages")
		}
	}
	return names
}

func TestSetupNamespacesScript(t *testing.T) {
	for _, openshift := range []bool{true, false} {
		env := []string{}
		if openshift {
			env = append(env, "FAKE_OPENSHIFT=1")
		}
		f := newFakeCluster(t, env...)
		if code, out := f.run(t, "setup-namespaces.sh", "--inject-all", "team-a", "team-b"); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		applied := f.applied(t)
		if len(applied) != 2 {
			t.Fatalf("applied %d kustomizations, want one per namespace", len(applied))
		}
		policy, err := os.ReadFile("policies/approved-apis.yaml")
		if err != nil {
			t.Fatal(err)
		}
		for i, ns := range []string{"team-a", "team-b"} {
			kinds := map[string]bool{}
			for _, o := range applied[i] {
				if err := validateObject(t, o); err != nil {
					t.Errorf("%s: %v", o, err)
				}
				kinds[o.GVK.Kind] = true
				if o.GVK.Kind == "Namespace" {
					var n corev1.Namespace
					if err := strict(o.JSON, &n); err != nil {
						t.Fatal(err)
					}
					if n.Name != ns || n.Labels["mcpguard.dev/inject"] != "enabled" || n.Labels["istio-injection"] != "enabled" {
						t.Errorf("namespace %s labels %v", n.Name, n.Labels)
					}
					continue
				}
				if o.Namespace != ns {
					t.Errorf("%s applied to namespace %q, want %s", o, o.Namespace, ns)
				}
				if o.GVK.Kind == "ConfigMap" {
					var cm corev1.ConfigMap
					if err := strict(o.JSON, &cm); err != nil {
						t.Fatal(err)
					}
					if cm.Name != "mcpguard-policy" || cm.Data["policy.yaml"] != string(policy) {
						t.Errorf("ConfigMap %s does not hold the policy under policy.yaml", cm.Name)
					}
				}
			}
			for _, k := range []string{"Namespace", "ConfigMap", "Sidecar", "NetworkPolicy"} {
				if !kinds[k] {
					t.Errorf("%s: no %s applied", ns, k)
				}
			}
			if kinds["EgressFirewall"] != openshift {
				t.Errorf("%s: EgressFirewall applied = %v on a cluster where OVN is %v", ns, kinds["EgressFirewall"], openshift)
			}
		}
	}
}

func TestTestPolicyScript(t *testing.T) {
	bin := mcpguardBinary(t)
	f := newFakeCluster(t)
	code, out := f.run(t, "test-policy.sh", "--mcpguard", bin)
	if code != 0 || !strings.Contains(out, "every check matched") {
		t.Fatalf("the shipped policy: exit %d\n%s", code, out)
	}
	// A policy that lets run_command through must fail the table.
	shipped, err := os.ReadFile("policies/approved-apis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const deny = "    - tool: run_command\n      action: deny\n"
	if !strings.Contains(string(shipped), deny) {
		t.Fatalf("policies/approved-apis.yaml no longer denies run_command the way this test edits it (%q); update the test", deny)
	}
	leaky := filepath.Join(t.TempDir(), "leaky.yaml")
	if err := os.WriteFile(leaky, []byte(strings.Replace(string(shipped), deny, "    - tool: run_command\n      action: allow\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = f.run(t, "test-policy.sh", "--mcpguard", bin, "--policy", leaky)
	if code != 1 || !strings.Contains(out, "✗ run_command") {
		t.Errorf("a policy allowing run_command: exit %d, want 1 with the row marked\n%s", code, out)
	}
}

func TestDemoCompleteScript(t *testing.T) {
	f := newFakeCluster(t)
	code, out := f.run(t, "demo-complete.sh")
	if code != 0 || !strings.Contains(out, "every row matched") {
		t.Fatalf("against the fake cluster: exit %d\n%s", code, out)
	}
	for _, want := range []string{"fetch_url {\"url\":\"https://malicious.com\"}", "rule fetch_url/approved-hosts", "HTTP 200", "agent calls the gateway directly", "pod runtimeClassName"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q\n%s", want, out)
		}
	}
	if !hasCall(f.calls(t), "apply", "-k", "/manifests/osc/agent") {
		t.Error("did not deploy the example agent")
	}
	// A sidecar that lets malicious.com through is reported, and fails.
	f = newFakeCluster(t, "FAKE_LEAK=1")
	code, out = f.run(t, "demo-complete.sh", "--no-deploy")
	if code != 1 || !strings.Contains(out, "✗ 1 policy (sidecar)") {
		t.Errorf("with a leaking sidecar: exit %d, want 1 and the row marked\n%s", code, out)
	}
	if hasCall(f.calls(t), "apply") {
		t.Error("--no-deploy applied something")
	}
}
