package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	sigsjson "sigs.k8s.io/json"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

func testWebhook(t testing.TB) *Webhook {
	t.Helper()
	wh, err := NewWebhook(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

// reviewBody wraps a pod (YAML or JSON) in an AdmissionReview v1 CREATE.
func reviewBody(t testing.TB, uid, pod string, mod func(*admissionv1.AdmissionRequest)) []byte {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(pod))
	if err != nil {
		t.Fatal(err)
	}
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("uid-" + uidFor(uid)),
		Kind:      podKind,
		Resource:  podResource,
		Namespace: "agents",
		Operation: admissionv1.Create,
	}
	req.Object.Raw = raw
	if mod != nil {
		mod(req)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: reviewTypeMeta,
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const annotatedPod = `
apiVersion: v1
kind: Pod
metadata:
  name: agent
  annotations: {mcpguard.dev/inject: "true"}
spec:
  containers:
  - name: agent
    image: registry.example/agent:v1
`

// injectedPod carries the status annotation, as pods mcpguard injected do.
const injectedPod = `
apiVersion: v1
kind: Pod
metadata:
  name: agent
  annotations: {mcpguard.dev/inject: "true", mcpguard.dev/status: "{}"}
spec:
  containers:
  - name: agent
    image: registry.example/agent:v1
`

const plainPod = `
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
  - name: app
    image: registry.example/app:v1
`

func post(t testing.TB, h http.Handler, path, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeResponse(t testing.TB, w *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &review); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v\n%s", err, w.Body)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || review.Response == nil {
		t.Fatalf("response envelope: %s", w.Body)
	}
	return review.Response
}

func TestHandlerRejectsBadRequests(t *testing.T) {
	wh := testWebhook(t)
	good := reviewBody(t, "1", annotatedPod, nil)
	for _, tc := range []struct {
		name, method, path, ctype string
		body                      []byte
		code                      int
		msg                       string
	}{
		{"get", http.MethodGet, PathMutate, "application/json", good, 405, `method "GET" not allowed`},
		{"content type", "POST", PathMutate, "text/plain", good, 415, `content type "text/plain" is not application/json`},
		{"unknown path", "POST", "/validate", "application/json", good, 404, "not found"},
		{"oversized", "POST", PathMutate, "application/json", bytes.Repeat([]byte(" "), MaxRequestBytes+1), 413, "larger than 4194304 bytes"},
		{"not json", "POST", PathMutate, "application/json", []byte("{"), 400, "decoding AdmissionReview"},
		{"v1beta1", "POST", PathMutate, "application/json", bytes.Replace(good, []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1), 400, `got apiVersion "admission.k8s.io/v1beta1"`},
		{"no request", "POST", PathMutate, "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "has no request"},
		{"no uid", "POST", PathMutate, "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`), 400, "has no uid"},
		{"duplicate key", "POST", PathMutate, "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b"}}`), 400, `duplicate field "request.uid"`},
		{"case folded key", "POST", PathMutate, "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","Request":{"uid":"a"}}`), 400, "has no request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, bytes.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ctype)
			w := httptest.NewRecorder()
			wh.ServeHTTP(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.msg) {
				t.Errorf("got %d %q, want %d containing %q", w.Code, w.Body, tc.code, tc.msg)
			}
		})
	}
}

func TestHandlerVerdicts(t *testing.T) {
	wh := testWebhook(t)
	for _, tc := range []struct {
		name    string
		path    string
		pod     string
		mod     func(*admissionv1.AdmissionRequest)
		allowed bool
		patched bool
		msg     string
	}{
		{"annotated", PathMutate, annotatedPod, nil, true, true, ""},
		{"annotated dry run", PathMutate, annotatedPod, func(r *admissionv1.AdmissionRequest) { yes := true; r.DryRun = &yes }, true, true, ""},
		{"plain", PathMutate, plainPod, nil, true, false, ""},
		{"plain in opted-in namespace", PathMutateNamespace, plainPod, nil, true, true, ""},
		{"update", PathMutate, annotatedPod, func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }, true, false, ""},
		{"not a pod", PathMutate, `{"apiVersion":"apps/v1","kind":"Deployment"}`, func(r *admissionv1.AdmissionRequest) {
			r.Kind.Group, r.Kind.Kind, r.Resource.Group, r.Resource.Resource = "apps", "Deployment", "apps", "deployments"
		}, true, false, ""},
		{"ephemeral container on a pod not injected", PathMutate, annotatedPod + "  ephemeralContainers: [{name: dbg, image: busybox, targetContainerName: mcpguard-proxy}]\n", func(r *admissionv1.AdmissionRequest) {
			r.SubResource, r.Operation = "ephemeralcontainers", admissionv1.Update
		}, true, false, ""},
		{"ephemeral container targeting the sidecar", PathMutate, injectedPod + "  ephemeralContainers: [{name: dbg, image: busybox, targetContainerName: mcpguard-proxy}]\n", func(r *admissionv1.AdmissionRequest) {
			r.SubResource, r.Operation = "ephemeralcontainers", admissionv1.Update
		}, false, false, `ephemeral container "dbg" targets "mcpguard-proxy"`},
		{"ephemeral container mounting the token", PathMutate, injectedPod + "  ephemeralContainers: [{name: dbg, image: busybox, volumeMounts: [{name: mcpguard-token, mountPath: /t}]}]\n", func(r *admissionv1.AdmissionRequest) {
			r.SubResource, r.Operation = "ephemeralcontainers", admissionv1.Update
		}, false, false, `ephemeral container "dbg" mounts volume "mcpguard-token"`},
		{"other subresource", PathMutate, annotatedPod, func(r *admissionv1.AdmissionRequest) { r.SubResource = "status" }, true, false, ""},
		{"bad annotation", PathMutate, strings.Replace(annotatedPod, `"true"`, `"on"`, 1), nil, false, false, `annotation "mcpguard.dev/inject" has value "on"; allowed values are "true" and "false"`},
		{"shared pid namespace", PathMutate, annotatedPod + "  shareProcessNamespace: true\n", nil, false, false, "spec.shareProcessNamespace is true"},
		{"no object", PathMutate, "null", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }, false, false, "admission request has no object"},
		{"duplicate pod key", PathMutate, "null", func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw = []byte(`{"kind":"Pod","spec":{"hostPID":true,"hostPID":false}}`)
		}, false, false, `duplicate field "spec.hostPID"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := reviewBody(t, tc.name, tc.pod, tc.mod)
			resp := decodeResponse(t, post(t, wh, tc.path, "application/json; charset=utf-8", body))
			if want := "uid-" + uidFor(tc.name); string(resp.UID) != want {
				t.Errorf("uid %q, want %q", resp.UID, want)
			}
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed %v, want %v (%+v)", resp.Allowed, tc.allowed, resp.Result)
			}
			if !tc.allowed && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.msg)) {
				t.Errorf("result %+v, want message containing %q", resp.Result, tc.msg)
			}
			if (len(resp.Patch) > 0) != tc.patched {
				t.Fatalf("patch %s, want patched %v", resp.Patch, tc.patched)
			}
			if tc.patched {
				if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
					t.Errorf("patch type %v", resp.PatchType)
				}
				var review admissionv1.AdmissionReview
				json.Unmarshal(body, &review)
				out, err := applyPatch(review.Request.Object.Raw, json.RawMessage(resp.Patch))
				if err != nil {
					t.Fatal(err)
				}
				var pod corev1.Pod
				if err := json.Unmarshal(out, &pod); err != nil {
					t.Fatal(err)
				}
				if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != SidecarName {
					t.Errorf("init containers after patch: %+v", pod.Spec.InitContainers)
				}
			}
		})
	}
}

func TestNamespaceDefaults(t *testing.T) {
	var looked []string
	wh := testWebhook(t).WithNamespaces(func(_ context.Context, name string) (map[string]string, error) {
		looked = append(looked, name)
		switch name {
		case "sandboxed":
			return map[string]string{AnnotationRuntimeClass: "kata", AnnotationPolicyConfigMap: "team-policy"}, nil
		case "typo":
			return map[string]string{AnnotationRuntimeClass: "gvisor"}, nil
		}
		return nil, errors.New("connection refused")
	})
	review := func(ns, pod, path string) *admissionv1.AdmissionResponse {
		body := reviewBody(t, ns, pod, func(r *admissionv1.AdmissionRequest) { r.Namespace = ns })
		return decodeResponse(t, post(t, wh, path, "application/json", body))
	}
	resp := review("sandboxed", annotatedPod, PathMutate)
	if !resp.Allowed || !strings.Contains(string(resp.Patch), `"path":"/spec/runtimeClassName","value":"kata"`) || !strings.Contains(string(resp.Patch), `"name":"team-policy"`) {
		t.Errorf("namespace defaults not applied: %s", resp.Patch)
	}
	// The pod's own annotation wins over the namespace's.
	resp = review("sandboxed", strings.Replace(annotatedPod, `mcpguard.dev/inject: "true"`, `mcpguard.dev/inject: "true", mcpguard.dev/policy-configmap: own`, 1), PathMutate)
	if !strings.Contains(string(resp.Patch), `"name":"own"`) {
		t.Errorf("pod annotation did not win: %s", resp.Patch)
	}
	resp = review("typo", annotatedPod, PathMutate)
	if resp.Allowed || !strings.Contains(resp.Result.Message, `namespace annotation "mcpguard.dev/runtime-class" has value "gvisor"`) {
		t.Errorf("bad namespace annotation: %+v", resp.Result)
	}
	resp = review("unreachable", annotatedPod, PathMutate)
	if resp.Allowed || resp.Result.Code != 500 || !strings.Contains(resp.Result.Message, `reading namespace "unreachable" for its mcpguard defaults: connection refused`) {
		t.Errorf("lookup failure did not refuse: %+v", resp.Result)
	}
	looked = nil
	if resp := review("unreachable", plainPod, PathMutate); !resp.Allowed {
		t.Errorf("a pod that did not opt in was refused: %+v", resp.Result)
	}
	if len(looked) > 0 {
		t.Errorf("namespace read for a pod that did not opt in: %q", looked)
	}
}

func TestHealthz(t *testing.T) {
	w := httptest.NewRecorder()
	testWebhook(t).ServeHTTP(w, httptest.NewRequest(http.MethodGet, PathHealthz, nil))
	if w.Code != 200 || w.Body.String() != "ok\n" {
		t.Errorf("got %d %q", w.Code, w.Body)
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	cfg := Config{
		Upstream:               "gateway:8080",
		TokenExpirationSeconds: 60,
		AgentEnv:               []string{"1BAD"},
		DefaultRuntimeClass:    "gvisor",
		MemoryFloorAction:      "shrug",
	}.WithDefaults()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	want := `image is required: the sidecar's image, e.g. ghcr.io/example/mcpguard:v1
upstream "gateway:8080" is not an absolute http or https URL
audience is required: the audience the gateway accepts in the sidecar's projected token
token expiration 60s is below Kubernetes' minimum of 600s
agent env "1BAD" is not a valid variable name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')
default runtime class "gvisor" is not one of the runtime classes ["kata"]
memory floor action "shrug" is not "raise" or "deny"`
	if err.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", err, want)
	}
	if err := testConfig().Validate(); err != nil {
		t.Errorf("test config: %v", err)
	}
}

// FuzzAdmissionHandler feeds arbitrary bodies to the handler. Whatever the
// input: no panic; a 200 carries an AdmissionReview answering the same uid; a
// patch applies to the request's raw object and yields a pod that, reviewed
// again, needs no further patch (so a reinvoked webhook never injects twice).
func FuzzAdmissionHandler(f *testing.F) {
	wh := testWebhook(f)
	f.Add(reviewBody(f, "a", annotatedPod, nil), false)
	f.Add(reviewBody(f, "b", plainPod, nil), true)
	for _, name := range []string{"unknown-fields", "istio-native-first", "istio-after-reorder", "kata-floor-raise", "env-override", "bypass-attempts"} {
		src, err := readTestdata(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(reviewBody(f, name, src, nil), false)
	}
	update := func(sub string) func(*admissionv1.AdmissionRequest) {
		return func(r *admissionv1.AdmissionRequest) {
			r.Operation, r.SubResource = admissionv1.Update, sub
			r.OldObject.Raw = r.Object.Raw
		}
	}
	f.Add(reviewBody(f, "u", injectedPod+"  initContainers: [{name: mcpguard-proxy, image: x}]\n", update("")), false)
	f.Add(reviewBody(f, "e", injectedPod+"  ephemeralContainers: [{name: d, image: b, targetContainerName: agent}]\n", update("ephemeralcontainers")), false)
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":{"metadata":{"annotations":{"mcpguard.dev/inject":"true"}},"spec":{"containers":[{"name":"a","env":[{"name":"MCP_GATEWAY_URL","valueFrom":{}}]}]}}}}`), false)
	f.Fuzz(func(t *testing.T, body []byte, namespace bool) {
		path := PathMutate
		if namespace {
			path = PathMutateNamespace
		}
		w := post(t, wh, path, "application/json", body)
		if w.Code != http.StatusOK {
			if w.Code < 400 || w.Code > 499 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			return
		}
		// The oracle decodes as the API server's own library does:
		// case-sensitively. encoding/json would read a case variant such as
		// "ResourCe" as "resource"; the handler rightly ignores it as an
		// unknown field (a seed under testdata/fuzz pins this).
		var in admissionv1.AdmissionReview
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &in); err != nil {
			t.Fatalf("handler accepted a body the API server's decoder cannot decode: %v", err)
		}
		resp := decodeResponse(t, w)
		if resp.UID != in.Request.UID {
			t.Fatalf("uid %q, want %q", resp.UID, in.Request.UID)
		}
		if len(resp.Patch) == 0 {
			return
		}
		out, err := applyPatch(in.Request.Object.Raw, json.RawMessage(resp.Patch))
		if err != nil {
			t.Fatalf("patch does not apply to the raw object: %v\npatch: %s\nobject: %s", err, resp.Patch, in.Request.Object.Raw)
		}
		in.Request.Object.Raw = out
		again := wh.Review(context.Background(), in.Request, scopeOf(path))
		if !again.Allowed || len(again.Patch) > 0 {
			t.Fatalf("second review of the patched pod: allowed %v patch %s result %+v\npod: %s", again.Allowed, again.Patch, again.Result, out)
		}
	})
}

func scopeOf(path string) Scope {
	if path == PathMutateNamespace {
		return ScopeNamespace
	}
	return ScopePod
}

func readTestdata(name string) (string, error) {
	b, err := os.ReadFile("testdata/" + name + ".yaml")
	return string(b), err
}

// uidFor makes a test name into a uid-safe string.
func uidFor(s string) string { return fmt.Sprintf("%x", s) }

var (
	podResource    = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	reviewTypeMeta = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}
)
