package regoworker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/rules"
	"mcpguard.dev/mcpguard/rules/rego"
)

// workerBin is cmd/mcpguard-rego, built once for the package's tests (not
// in TestMain: the fuzz targets' worker processes need none).
var workerBin = sync.OnceValues(func() (string, error) {
	var err error
	if workerDir, err = os.MkdirTemp("", "regoworker"); err != nil {
		return "", err
	}
	dir := workerDir
	bin := filepath.Join(dir, Command)
	if out, err := exec.Command("go", "build", "-o", bin, "mcpguard.dev/mcpguard/cmd/mcpguard-rego").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/mcpguard-rego: %v\n%s", err, out)
	}
	return bin, nil
})

var workerDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if workerDir != "" {
		os.RemoveAll(workerDir)
	}
	os.Exit(code)
}

func workerPath(t *testing.T) string {
	t.Helper()
	bin, err := workerBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

const module = `package m

d := {"allow": true, "reason": "", "rule": "r"}
echo := {"allow": false, "reason": sprintf("%v", [input]), "rule": "echo"}
args := input.arguments
n := input.arguments.n + 1
set := {"a", "b"}
undefined_d if false
parsed := mcpguard.url.parse(input.arguments.url)
clean := mcpguard.path.clean(input.arguments.p)
failing := 1 / input.arguments.zero
# 36M iterations, seconds of work: stopped at the budget.
default slow := {"allow": true}
slow := {"allow": false} if {
	some i in numbers.range(1, 6000)
	some j in numbers.range(1, 6000)
	i * j == -1
}
`

var queries = []string{"data.m.d", "data.m.echo", "data.m.args", "data.m.n", "data.m.set[_]", "data.m.undefined_d",
	"data.m.parsed", "data.m.clean", "data.m.failing", "data.m.slow"}

func newBackend(t *testing.T) *Backend {
	t.Helper()
	b := New(workerPath(t))
	t.Cleanup(b.Close)
	return b
}

func compile(t *testing.T, b rules.RegoBackend) rules.RegoProgram {
	t.Helper()
	p, err := b.Compile([]rules.RegoSource{{Name: "m.rego", Text: module}}, queries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func input(args string) *rules.RegoInput {
	var v any
	d := json.NewDecoder(strings.NewReader(args))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	return &rules.RegoInput{Method: "tools/call", Tool: "srv_t", Name: "t", Prefix: "srv", Server: "s", Session: "sess",
		ProtocolVersion: "2025-11-25", Identity: rules.Identity{Namespace: "ns", Labels: map[string]string{"app": "a"}},
		Arguments: v, ArgumentsJSON: json.RawMessage(args)}
}

// TestLikeInProcess holds the worker's answers to the in-process backend's
// for the same modules, queries and inputs: values, undefined, and errors.
func TestLikeInProcess(t *testing.T) {
	local := compile(t, rego.Backend{})
	remote := compile(t, newBackend(t))
	tests := []struct{ query, args string }{
		{"data.m.d", `{}`},
		{"data.m.echo", `{"x":[1,2.5,"é",null,true]}`},
		{"data.m.echo", `{}`},
		{"data.m.args", `{"big":123456789012345678901234567890,"f":1e400,"s":"\u2028<&>\ud83d\ude00"}`},
		{"data.m.n", `{"n":41}`},
		{"data.m.n", `{"n":"x"}`},
		{"data.m.set[_]", `{}`},
		{"data.m.undefined_d", `{}`},
		{"data.m.parsed", `{"url":"https://user@10.0.0.1:8443/p?q=1"}`},
		{"data.m.parsed", `{"url":"http://0x7f.1/"}`},
		{"data.m.clean", `{"p":"/a//b/../c"}`},
		{"data.m.clean", `{"p":"relative"}`},
		{"data.m.failing", `{"zero":0}`},
		{"data.m.nope", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.query+" "+tt.args, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			want, wantErr := local.Eval(ctx, tt.query, input(tt.args))
			got, err := remote.Eval(ctx, tt.query, input(tt.args))
			if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("error %v, in process %v", err, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %#v, in process %#v", got, want)
			}
		})
	}
}

// TestCompileErrorsLikeInProcess: a module's problems come back as the
// in-process compile reports them, so the policy file's lines are the same.
func TestCompileErrorsLikeInProcess(t *testing.T) {
	b := newBackend(t)
	tests := []struct {
		mods    []rules.RegoSource
		queries []string
	}{
		{[]rules.RegoSource{{Name: "a.rego", Text: "package a\n\nx if {"}}, []string{"data.a.x"}},
		{[]rules.RegoSource{{Name: "a.rego", Text: "package a\n\nx := 1"}, {Name: "b.rego", Text: "package b\n\ny := http.send({})"}}, []string{"data.a.x"}},
		{[]rules.RegoSource{{Name: "a.rego", Text: "package a\n\nx := 1"}}, []string{"data.a.x; data.a.x"}},
		{[]rules.RegoSource{{Name: "a.rego", Text: "package a\n\nx := y"}}, []string{"data.a.x"}},
	}
	for _, tt := range tests {
		_, want := rego.Backend{}.Compile(tt.mods, tt.queries)
		_, got := b.Compile(tt.mods, tt.queries)
		if want == nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%v: got %#v, in process %#v", tt.mods, got, want)
		}
	}
}

// TestNoRegoNoWorker: a policy without Rego starts no worker, and one with
// Rego is refused, naming what to install, when the worker is missing.
func TestNoRegoNoWorker(t *testing.T) {
	missing := New(filepath.Join(t.TempDir(), Command))
	t.Cleanup(func() { rules.SetRegoBackend(rego.Backend{}) })
	rules.SetRegoBackend(missing)
	const header = "apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata: {name: t}\nspec:\n"
	if _, err := rules.Parse("p.yaml", []byte(header+"  tools:\n    - tool: a\n")); err != nil {
		t.Fatal(err)
	}
	if missing.w != nil || !missing.started.IsZero() {
		t.Fatal("a policy without Rego started the worker")
	}
	_, err := rules.Parse("p.yaml", []byte(header+"  rego:\n    modules: [{inline: \"package x\\nd := {}\\n\"}]\n  tools:\n    - tool: a\n      checks: [{rego: data.x.d}]\n"))
	for _, want := range []string{"p.yaml:6: spec.rego.modules[0]: ", "cannot be started", "install mcpguard-rego", EnvPath} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("load error %v, want it to say %q", err, want)
		}
	}
}

// TestWorkerDiesMidCheck: a check in flight when the worker dies is denied
// (its Eval fails, saying so), and the worker is started again with the
// programs in use, so the next check is answered.
func TestWorkerDiesMidCheck(t *testing.T) {
	b := newBackend(t)
	p := compile(t, b)
	ctx := context.Background()
	first := b.w.cmd.Process.Pid
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := p.Eval(ctx, "data.m.slow", input(`{}`))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond) // the check is in flight: it takes seconds
	syscall.Kill(first, syscall.SIGKILL)
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "exited during the check") {
		t.Fatalf("the check in flight: %v, want it failed by the worker's exit", err)
	}
	var vals []any
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if vals, err = p.Eval(ctx, "data.m.d", input(`{}`)); err == nil {
			break
		}
	}
	if err != nil || len(vals) != 1 {
		t.Fatalf("after the restart: %v %v", vals, err)
	}
	if b.w.cmd.Process.Pid == first {
		t.Fatal("the same worker answered")
	}
}

// TestHungWorker: a worker that stops answering (SIGSTOP) is denied by the
// check's budget, then killed and started again.
func TestHungWorker(t *testing.T) {
	b := newBackend(t)
	p := compile(t, b)
	first := b.w.cmd.Process.Pid
	syscall.Kill(first, syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if _, err := p.Eval(ctx, "data.m.d", input(`{}`)); err != context.DeadlineExceeded {
		t.Fatalf("a stopped worker: %v, want the budget's deadline", err)
	}
	var err error
	for deadline := time.Now().Add(hungAfter + 10*time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err = p.Eval(context.Background(), "data.m.d", input(`{}`)); err == nil {
			break
		}
	}
	if err != nil || b.w.cmd.Process.Pid == first {
		t.Fatalf("after the hang: %v, worker %d (was %d)", err, b.w.cmd.Process.Pid, first)
	}
}

// TestConcurrentChecks: checks in flight at once are each answered with
// their own input's value, and a slow one holds up none of the others.
func TestConcurrentChecks(t *testing.T) {
	p := compile(t, newBackend(t))
	slow := make(chan time.Duration, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		start := time.Now()
		p.Eval(ctx, "data.m.slow", input(`{}`))
		slow <- time.Since(start)
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				n := g*1000 + i
				vals, err := p.Eval(context.Background(), "data.m.n", input(fmt.Sprintf(`{"n":%d}`, n)))
				if err != nil || len(vals) != 1 || vals[0] != json.Number(fmt.Sprint(n+1)) {
					t.Errorf("n=%d: %v %v", n, vals, err)
					return
				}
			}
		})
	}
	wg.Wait()
	fast := time.Since(start)
	if d := <-slow; d < 200*time.Millisecond {
		t.Errorf("the slow check ended after %v, before its budget", d)
	}
	t.Logf("320 checks in %v beside one running to its budget", fast)
}

// TestReload: a reload sends the new modules, a compile error refuses it
// and leaves the policy in force, and programs no longer used are dropped.
func TestReload(t *testing.T) {
	b := newBackend(t)
	rules.SetRegoBackend(b)
	t.Cleanup(func() { rules.SetRegoBackend(rego.Backend{}) })
	dir := t.TempDir()
	mod := filepath.Join(dir, "m.rego")
	write := func(text string) {
		if err := os.WriteFile(mod, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package m\n\nd := {\"allow\": false, \"reason\": \"first\"}\n")
	pol := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pol, []byte("apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata: {name: t}\nspec:\n  rego:\n    modules: [{file: m.rego}]\n  tools:\n    - tool: a\n      checks: [{rego: data.m.d}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := rules.Load(pol)
	if err != nil {
		t.Fatal(err)
	}
	decide := func() string {
		d := e.Decide(context.Background(), rules.Input{Method: "tools/call", Tool: "a", Arguments: json.RawMessage(`{}`)})
		return d.Detail
	}
	if got := decide(); got != "first" {
		t.Fatalf("before the reload: %q", got)
	}
	write("package m\n\nd := {\"allow\": false, \"reason\": \"second\"}\n")
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := decide(); got != "second" {
		t.Fatalf("after the reload: %q", got)
	}
	write("package m\n\nd := {\"allow\": false, \"reason\": \"third\"\n")
	if err := e.Reload(); err == nil || !strings.Contains(err.Error(), "m.rego:4: rego: rego_parse_error") {
		t.Fatalf("a reload with a broken module: %v", err)
	}
	if got := decide(); got != "second" {
		t.Fatalf("after the refused reload: %q", got)
	}
	// The first policy is garbage now; the worker forgets it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		b.mu.Lock()
		n := len(b.programs)
		b.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d programs kept, want the one in force", n)
		}
	}
	if got := decide(); got != "second" {
		t.Fatalf("after the first policy was dropped: %q", got)
	}
}

// The cost of one Rego check through the worker against in process: the
// same policy and call as rules' BenchmarkDecideRego, decided by an engine.
func BenchmarkDecideRegoInProcess(b *testing.B) { benchDecide(b, rego.Backend{}) }

func BenchmarkDecideRegoWorker(b *testing.B) {
	bin, err := workerBin()
	if err != nil {
		b.Fatal(err)
	}
	w := New(bin)
	defer w.Close()
	benchDecide(b, w)
}

const benchPolicy = `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: t}
spec:
  rego:
    modules:
      - inline: |
          package mcpguard

          default decision := {"allow": false, "reason": "no Rego rule allows it", "rule": "rego/default"}

          decision := {"allow": true} if {
            u := mcpguard.url.parse(input.arguments.url)
            u.valid
            u.host == "api.github.com"
            startswith(u.path, "/repos/")
            count(u.ip_classes) == 0
          }
  tools:
    - tool: gh
      checks:
        - rego: data.mcpguard.decision
`

func benchDecide(b *testing.B, backend rules.RegoBackend) {
	rules.SetRegoBackend(backend)
	defer rules.SetRegoBackend(rego.Backend{})
	e, err := rules.Parse("policy.yaml", []byte(benchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	in := rules.Input{Method: "tools/call", Tool: "gh", Arguments: json.RawMessage(`{"url":"https://api.github.com/repos/golang/go"}`)}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d := e.Decide(context.Background(), in); !d.Allow {
				b.Fatal(d)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if d := e.Decide(context.Background(), in); !d.Allow {
					b.Error(d)
					return
				}
			}
		})
	})
}

// BenchmarkStartAndCompile is what a sidecar whose policy has Rego pays at
// load: starting the worker and compiling the policy in it.
func BenchmarkStartAndCompile(b *testing.B) {
	bin, err := workerBin()
	if err != nil {
		b.Fatal(err)
	}
	mods := []rules.RegoSource{{Name: "m.rego", Text: module}}
	for b.Loop() {
		w := New(bin)
		if _, err := w.Compile(mods, queries); err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
}

// TestNeverWronglyAllowed: checks decided while the policy is reloaded and
// the worker is killed are each the policy's answer or a denial, never an
// allow the policy would not give; and the engine decides again after.
func TestNeverWronglyAllowed(t *testing.T) {
	b := newBackend(t)
	rules.SetRegoBackend(b)
	t.Cleanup(func() { rules.SetRegoBackend(rego.Backend{}) })
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	write := func(n int) {
		src := fmt.Sprintf("apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata: {name: t}\nspec:\n  rego:\n    modules:\n      - inline: |\n          package m\n          # version %d\n          d := {\"allow\": input.arguments.n %% 2 == 0, \"reason\": \"odd\"}\n  tools:\n    - tool: a\n      checks: [{rego: data.m.d}]\n", n)
		if err := os.WriteFile(pol, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	e, err := rules.Load(pol)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var allowed, denied, failed sync.Map
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := g*100000 + i
				d := e.Decide(context.Background(), rules.Input{Method: "tools/call", Tool: "a", Arguments: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
				switch {
				case d.Allow && n%2 != 0:
					t.Errorf("n=%d allowed: %+v", n, d)
				case d.Allow:
					allowed.Store(n, true)
				case d.Detail == "odd":
					denied.Store(n, true)
				default:
					failed.Store(n, d.Detail)
				}
			}
		})
	}
	for i := 1; i <= 4; i++ {
		time.Sleep(100 * time.Millisecond)
		write(i)
		if err := e.Reload(); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
		if i == 2 {
			b.mu.Lock()
			syscall.Kill(b.w.cmd.Process.Pid, syscall.SIGKILL)
			b.mu.Unlock()
		}
	}
	time.Sleep(1500 * time.Millisecond) // past the restart
	close(stop)
	wg.Wait()
	count := func(m *sync.Map) (n int) {
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	t.Logf("%d allowed, %d denied by the policy, %d denied by the worker's exit", count(&allowed), count(&denied), count(&failed))
	failed.Range(func(_, why any) bool {
		// The worker's exit and restart, or a check that waited past its
		// budget on a loaded machine: denials either way.
		if !strings.Contains(why.(string), "Rego worker") && !strings.Contains(why.(string), "took longer than") {
			t.Errorf("a denial for another reason: %v", why)
		}
		return true
	})
	if d := e.Decide(context.Background(), rules.Input{Method: "tools/call", Tool: "a", Arguments: json.RawMessage(`{"n":2}`)}); !d.Allow {
		t.Fatalf("after the restart: %+v", d)
	}
}

// TestCheckDoesNotStartWorker: a check made when no worker runs and none is
// starting (the last start failed) is denied at once, within its budget,
// instead of waiting for a worker to be started and the programs compiled
// into it; the worker is started meanwhile, and answers later checks.
func TestCheckDoesNotStartWorker(t *testing.T) {
	link := filepath.Join(t.TempDir(), Command)
	if err := os.Symlink(workerPath(t), link); err != nil {
		t.Fatal(err)
	}
	b := New(link)
	t.Cleanup(b.Close)
	p := compile(t, b)
	b.mu.Lock()
	first, started := b.w.cmd.Process.Pid, b.started
	b.mu.Unlock()
	os.Remove(link) // the restart fails
	syscall.Kill(first, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		failed := b.w == nil && b.starting == nil && !b.started.Equal(started)
		b.mu.Unlock()
		if failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker was not started again")
		}
	}
	if err := os.Symlink(workerPath(t), link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := p.Eval(ctx, "data.m.d", input(`{}`))
	if took := time.Since(t0); err == nil || took > 500*time.Millisecond {
		t.Fatalf("a check while no worker runs: %v after %v, want denied within its budget", err, took)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err = p.Eval(context.Background(), "data.m.d", input(`{}`)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the worker could be started again: %v", err)
		}
	}
}

// TestHungWorkerLargeCheck: a check whose request is more than the pipe
// holds, sent to a worker that stopped reading, is denied by its budget
// too, and the worker killed and started again; it does not hold the
// check, and every check after it, while the worker stays stopped.
func TestHungWorkerLargeCheck(t *testing.T) {
	b := newBackend(t)
	p := compile(t, b)
	first := b.w.cmd.Process.Pid
	syscall.Kill(first, syscall.SIGSTOP)
	large := input(`{"s":"` + strings.Repeat("x", 1<<20) + `"}`)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		_, err := p.Eval(ctx, "data.m.d", large)
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a stopped worker answered")
		}
	case <-time.After(hungAfter + 5*time.Second):
		syscall.Kill(first, syscall.SIGKILL)
		t.Fatal("a check sent to a stopped worker was held past its budget")
	}
	var err error
	for deadline := time.Now().Add(hungAfter + 10*time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err = p.Eval(context.Background(), "data.m.d", input(`{}`)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("after the hang: %v", err)
	}
}
