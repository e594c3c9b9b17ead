package manifests_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"mcpguard.dev/mcpguard/inject"
)

// dockerfile is the repository's Dockerfile, split into stages.
type dockerfile struct {
	stages []stage
}

type stage struct {
	from  string
	lines []string // instructions, continuation lines joined
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfile
	var cur string
	// Global ARGs (before the first FROM) name the base images; FROM reads
	// them with their defaults, the production images.
	args := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		cur += trimmed
		if strings.HasPrefix(strings.ToUpper(cur), "FROM ") {
			from := os.Expand(strings.TrimSpace(cur[5:]), func(k string) string {
				v, ok := args[k]
				if !ok {
					t.Fatalf("Dockerfile: FROM %q uses ${%s}, which no ARG before it defines", cur, k)
				}
				return v
			})
			df.stages = append(df.stages, stage{from: from})
		} else if len(df.stages) == 0 {
			if !strings.HasPrefix(strings.ToUpper(cur), "ARG ") {
				t.Fatalf("Dockerfile: %q before the first FROM", cur)
			}
			k, v, _ := strings.Cut(strings.TrimSpace(cur[4:]), "=")
			args[k] = v
		} else {
			s := &df.stages[len(df.stages)-1]
			s.lines = append(s.lines, cur)
		}
		cur = ""
	}
	return df
}

// buildCommand returns the environment and arguments of the Dockerfile's
// `go build` (the else branch of its `if [ "$BINARIES" = release ]`), with
// ${VERSION} set to version.
func (df dockerfile) buildCommand(t *testing.T, version string) (env, args []string) {
	t.Helper()
	for _, l := range df.stages[0].lines {
		if !strings.HasPrefix(l, "RUN ") || !strings.Contains(l, " go build ") {
			continue
		}
		cmd := l[4:]
		if _, build, ok := strings.Cut(cmd, "; else "); ok {
			cmd = strings.TrimSuffix(strings.TrimSpace(build), "; fi")
		}
		words := shellWords(t, strings.ReplaceAll(cmd, "${VERSION}", version))
		for len(words) > 0 && strings.HasPrefix(words[0], "--mount=") {
			words = words[1:]
		}
		for len(words) > 0 && strings.Contains(words[0], "=") {
			env, words = append(env, words[0]), words[1:]
		}
		if len(words) < 2 || words[0] != "go" || words[1] != "build" {
			t.Fatalf("Dockerfile: cannot read the build command %q", l)
		}
		return env, words[1:]
	}
	t.Fatal("Dockerfile: no RUN ... go build in the first stage")
	return nil, nil
}

// shellWords splits a command line with double quotes, as sh would for the
// simple lines a Dockerfile's build step has.
func shellWords(t *testing.T, s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		case r == '$' || r == '`' || r == '\'' || r == '\\':
			t.Fatalf("Dockerfile build line uses %q, which this test does not interpret: %s", r, s)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

const testVersion = "v0.0.0-manifests-test"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// mcpguardBinary builds cmd/mcpguard exactly as the Dockerfile does, once.
func mcpguardBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mcpguard-manifests-test")
		if err != nil {
			binErr = err
			return
		}
		env, args := readDockerfile(t).buildCommand(t, testVersion)
		i := slices.Index(args, "-o")
		if i < 0 || i+1 >= len(args) {
			binErr = fmt.Errorf("Dockerfile go build has no -o: %q", args)
			return
		}
		binPath = filepath.Join(dir, "mcpguard")
		args[i+1] = binPath
		cmd := exec.Command("go", args...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestDockerfile checks the Dockerfile itself, without a container engine
// (e2e/image_test.go checks the image podman builds from it): multi-stage,
// production base images by default, a static stamped stripped binary built
// with exactly the Dockerfile's flags, a distroless nonroot final stage
// without a shell.
func TestDockerfile(t *testing.T) {
	df := readDockerfile(t)
	if len(df.stages) != 2 {
		t.Fatalf("%d stages, want a build stage and a final stage", len(df.stages))
	}
	build, final := df.stages[0], df.stages[1]
	m := regexp.MustCompile(`^golang:(1\.\d+(?:\.\d+)?)\S* AS build$`).FindStringSubmatch(build.from)
	if m == nil {
		t.Fatalf("build stage FROM %q, want golang:<version>... AS build", build.from)
	}
	if want := strings.TrimPrefix(runtime.Version(), "go"); m[1] != want {
		t.Errorf("build stage uses Go %s; this repository is built and tested with %s", m[1], want)
	}
	if final.from != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage FROM %q, want gcr.io/distroless/static-debian12:nonroot", final.from)
	}
	var user, entrypoint string
	labels := map[string]bool{}
	for _, l := range final.lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "RUN", "SHELL":
			t.Errorf("final stage has %s: the distroless image has no shell", instr)
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entrypoint = rest
		case "LABEL":
			for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z]+)=`).FindAllStringSubmatch(rest, -1) {
				labels[m[1]] = true
			}
		case "COPY":
			if !strings.Contains(rest, "--from=build") {
				t.Errorf("final stage copies %q from the build context, not the build stage", rest)
			}
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(user) {
		t.Errorf("USER %q: want a numeric non-root UID, so runAsNonRoot can be verified", user)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 {
		t.Errorf("ENTRYPOINT %s: want the exec form naming the binary only", entrypoint)
	}
	for _, l := range []string{"title", "description", "version", "revision"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("no OCI label org.opencontainers.image.%s", l)
		}
	}

	// BINARIES=release copies what scripts/release.sh names its linux
	// binaries.
	script, err := os.ReadFile("../scripts/release.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"mcpguard", "mcpguard-sidecar", "mcpguard-rego"} {
		copied := `cp "dist/mcpguard-${VERSION}-linux-$(go env GOARCH)/` + bin + `" /out/` + bin + `;`
		if !slices.ContainsFunc(build.lines, func(l string) bool { return strings.Contains(l, copied) }) {
			t.Errorf("the build stage does not take %s from the release with BINARIES=release (%s)", bin, copied)
		}
		if !strings.Contains(string(script), `name=mcpguard-$VERSION-$os-$arch`) || !strings.Contains(string(script), `-o "$out/$name/`+bin+`"`) {
			t.Errorf("scripts/release.sh does not write $out/mcpguard-$VERSION-$os-$arch/%s, which the Dockerfile copies", bin)
		}
	}

	env, args := df.buildCommand(t, testVersion)
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("build env %q lacks CGO_ENABLED=0", env)
	}
	for _, want := range []string{"-trimpath", "-s -w -X main.version=" + testVersion, "./cmd/mcpguard"} {
		if !slices.Contains(args, want) {
			t.Errorf("build args %q lack %q", args, want)
		}
	}

	bin := mcpguardBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static, it would not run on distroless/static", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table: -s was not applied")
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "mcpguard "+testVersion+" ") {
		t.Errorf("`mcpguard version` printed %q (%v); want the stamped version %s", out, err, testVersion)
	}
}

// TestDockerignore: the build context keeps every directory the binary is
// built from.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	for _, must := range []string{".git", ".cache"} {
		if !slices.Contains(patterns, must) {
			t.Errorf(".dockerignore does not exclude %s", must)
		}
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{range .EmbedFiles}} {{$.Dir}}/{{.}}{{end}}{{end}}", "./cmd/mcpguard")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("..")
	for _, p := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module outside the repository
		}
		for _, pat := range patterns {
			first := strings.Split(rel, string(filepath.Separator))[0]
			if ok, _ := filepath.Match(pat, first); ok || rel == pat {
				t.Errorf(".dockerignore pattern %q excludes %s, which the binary is built from", pat, rel)
			}
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if slices.Contains(patterns, f) {
			t.Errorf(".dockerignore excludes %s", f)
		}
	}
}

// TestWebhookRunsWithShippedArgs starts the real binary with each overlay's
// rendered args. Mounted-certificate mode gets a certificate at the mounted
// paths and must serve /healthz and inject the sandboxed agent; own-CA mode
// must get past flag validation and stop only for want of a cluster.
func TestWebhookRunsWithShippedArgs(t *testing.T) {
	bin := mcpguardBinary(t)
	for _, dir := range webhookOverlays {
		t.Run(dir, func(t *testing.T) {
			var d appsv1.Deployment
			one(t, dir, "Deployment", webhookName, &d)
			c := d.Spec.Template.Spec.Containers[0]
			args := expandArgs(c)
			if args[0] != "webhook" {
				t.Fatalf("args start with %q, not the webhook subcommand", args[0])
			}
			for i, a := range args {
				args[i] = strings.ReplaceAll(a, "$(POD_NAMESPACE)", systemNamespace)
				if strings.HasPrefix(a, "--listen=") {
					args[i] = "--listen=127.0.0.1:0"
				}
			}
			if certFile := flagValue(args, "tls-cert-file"); certFile != "" {
				tmp := t.TempDir()
				writeServingCert(t, tmp, serviceDNSNames())
				for i, a := range args {
					args[i] = strings.Replace(a, filepath.Dir(certFile), tmp, 1)
				}
				runWebhookAndReview(t, bin, args)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = []string{"HOME=" + t.TempDir(), "KUBECONFIG=" + filepath.Join(t.TempDir(), "none")}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "tls: kubernetes client") {
				t.Errorf("mcpguard %s: %v\n%s\nwant exit 1 for want of a cluster, after the flags were accepted", strings.Join(args, " "), err, out)
			}
		})
	}
}

func runWebhookAndReview(t *testing.T, bin string, args []string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// done is closed when the process has exited; waitErr is then its
	// result, read by the listen wait and the deferred stop alike.
	done := make(chan struct{})
	var waitErr error
	addr := make(chan string, 1)
	var logs bytes.Buffer
	var logsMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logsMu.Lock()
			logs.Write(append(sc.Bytes(), '\n'))
			logsMu.Unlock()
			var l struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Listen != "" {
				addr <- l.Listen
			}
		}
		waitErr = cmd.Wait()
		close(done)
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			if waitErr != nil && !t.Failed() {
				t.Errorf("webhook did not exit cleanly on SIGTERM: %v", waitErr)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("webhook did not stop within 20s of SIGTERM")
		}
	}()
	var listen string
	select {
	case listen = <-addr:
	case <-done:
		logsMu.Lock()
		defer logsMu.Unlock()
		t.Fatalf("mcpguard %s exited: %v\n%s", strings.Join(args, " "), waitErr, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("webhook did not log its listen address within 30s")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + listen + inject.PathHealthz)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s: %s", inject.PathHealthz, resp.Status)
	}

	// The example agent's pod, as the ReplicaSet controller would create it.
	var agent appsv1.Deployment
	one(t, "osc/agent", "Deployment", "weather-agent", &agent)
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: *agent.Spec.Template.ObjectMeta.DeepCopy(),
		Spec:       agent.Spec.Template.Spec,
	}
	pod.GenerateName, pod.Namespace = "weather-agent-", "agents"
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("manifests-test"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "agents",
			Operation: admissionv1.Create,
			Object:    k8sruntime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(review)
	resp, err = client.Post("https://"+listen+inject.PathMutate, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(resp.Body)
	var got admissionv1.AdmissionReview
	if err := json.Unmarshal(respBody, &got); err != nil || got.Response == nil {
		t.Fatalf("%s answered %s: %s", inject.PathMutate, resp.Status, respBody)
	}
	if !got.Response.Allowed || got.Response.Patch == nil {
		t.Fatalf("the example agent was not injected: %+v", got.Response.Result)
	}
	p, err := jsonpatch.DecodePatch(got.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	mutated, err := p.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	var out corev1.Pod
	if err := strict(mutated, &out); err != nil {
		t.Fatalf("mutated pod: %v", err)
	}
	if out.Spec.RuntimeClassName == nil || *out.Spec.RuntimeClassName != "kata" {
		t.Errorf("runtimeClassName %v, want kata", out.Spec.RuntimeClassName)
	}
	i := slices.IndexFunc(out.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == inject.SidecarName })
	if i < 0 {
		t.Fatalf("no %s init container", inject.SidecarName)
	}
	side := out.Spec.InitContainers[i]
	if side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the sidecar is not a native sidecar (restartPolicy Always)")
	}
	if side.Image != flagValue(args, "image") {
		t.Errorf("sidecar image %q, want the webhook's --image %q", side.Image, flagValue(args, "image"))
	}
	checkRestricted(t, "injected weather-agent", out.Spec)
}

// writeServingCert writes a self-signed tls.crt and tls.key for names into
// dir, as service-ca or cert-manager would mount them.
func writeServingCert(t *testing.T, dir string, names []string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestValidationModulesStayOutOfBinary: the modules this package's tests use
// to validate manifests must never be linked into mcpguard.
func TestValidationModulesStayOutOfBinary(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cmd/mcpguard")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, heavy := range []string{"sigs.k8s.io/kustomize/", "istio.io/", "github.com/kuadrant/authorino", "sigs.k8s.io/controller-runtime/pkg/envtest", "k8s.io/apiextensions-apiserver", "helm.sh/helm/"} {
			if strings.HasPrefix(pkg, heavy) {
				t.Errorf("mcpguard links %s: validation-only modules belong in test files", pkg)
			}
		}
	}
}
