package telemetry

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/html"
)

// recordCalls fills a ring with two calls as the proxy records them: an
// allowed tools/call with its policy and gateway spans, then a denied one.
func recordCalls(t *testing.T) *Ring {
	t.Helper()
	ring := NewRing(32)
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ring)).Tracer("t")
	t0 := time.Now().Add(-time.Second)
	at := func(ms float64) trace.SpanEventOption {
		return trace.WithTimestamp(t0.Add(time.Duration(ms * float64(time.Millisecond))))
	}
	ctx, call := tr.Start(context.Background(), "tools/call fetch_url", trace.WithSpanKind(trace.SpanKindServer), at(0),
		trace.WithAttributes(attribute.String(keyTool, "fetch_url"), attribute.String(keySession, "sess-1"),
			attribute.String(keyDecision, "allow"), attribute.String(keyRule, "fetch_url/approved-hosts")))
	_, pol := tr.Start(ctx, "mcpguard.policy", at(0.1))
	pol.SetAttributes(attribute.String(keyDecision, "allow"), attribute.String(keyRule, "fetch_url/approved-hosts"))
	pol.End(at(0.2))
	_, up := tr.Start(ctx, "tools/call fetch_url", trace.WithSpanKind(trace.SpanKindClient), at(1))
	up.End(at(9))
	call.End(at(10))

	ctx, call = tr.Start(context.Background(), "tools/call run_command", trace.WithSpanKind(trace.SpanKindServer), at(20),
		trace.WithAttributes(attribute.String(keyTool, "run_command"), attribute.String(keySession, "sess-2"),
			attribute.String(keyDecision, "deny"), attribute.String(keyRule, "run_command/never"), attribute.String(keyErrType, "-32003")))
	_, pol = tr.Start(ctx, "mcpguard.policy", at(20.5))
	pol.SetAttributes(attribute.String(keyDecision, "deny"), attribute.String(keyRule, "run_command/never"),
		attribute.String(keyReason, "shell access is never allowed"))
	pol.SetStatus(codes.Error, "denied")
	pol.End(at(21.5))
	call.SetStatus(codes.Error, "-32003")
	call.End(at(22))
	return ring
}

func TestCallsAndTree(t *testing.T) {
	ring := recordCalls(t)
	all := Calls(ring.Spans(), Filter{})
	if len(all) != 2 || len(all[0].Children) != 2 || all[1].Decision() != "deny" {
		t.Fatalf("calls = %+v", all)
	}
	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{Denied: true}, []string{"tools/call run_command"}},
		{Filter{Tool: "fetch_url"}, []string{"tools/call fetch_url"}},
		{Filter{Session: "sess-2"}, []string{"tools/call run_command"}},
		{Filter{Limit: 1}, []string{"tools/call run_command"}},
		{Filter{Tool: "nope"}, nil},
	} {
		var got []string
		for _, c := range Calls(ring.Spans(), tc.f) {
			got = append(got, c.Name)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%+v: %v, want %v", tc.f, got, tc.want)
		}
	}
	var b bytes.Buffer
	if err := WriteTree(&b, all); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"  tools/call fetch_url  10.0ms  allow fetch_url/approved-hosts  ok  session sess-1  trace ",
		"\n  +0.100ms  0.100ms  mcpguard.policy internal  allow fetch_url/approved-hosts\n",
		"\n  +1.0ms  8.0ms  tools/call fetch_url client\n",
		"  tools/call run_command  2.0ms  deny run_command/never  error -32003  session sess-2",
		"\n  +0.500ms  1.0ms  mcpguard.policy internal  deny run_command/never: shell access is never allowed  error denied\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tree lacks %q:\n%s", want, out)
		}
	}
}

func TestTracesHandler(t *testing.T) {
	srv := httptest.NewServer(TracesHandler(recordCalls(t)))
	defer srv.Close()
	res, err := http.Get(srv.URL + "?denied=1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	if !strings.Contains(b.String(), `"buffer":32`) || !strings.Contains(b.String(), `"name":"tools/call run_command"`) ||
		strings.Contains(b.String(), "fetch_url") {
		t.Errorf("body %s", b.String())
	}
	res2, _ := http.Get(srv.URL + "?limit=x")
	if res2.StatusCode != http.StatusBadRequest {
		t.Errorf("bad limit: status %d", res2.StatusCode)
	}
	res2.Body.Close()
}

// chromium returns the path of a headless-capable Chromium. Without one the
// test fails (scripts/test.sh installs Debian's chromium), except under
// -short.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("MCPGUARD_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testing.Short() {
		t.Skip("chromium not installed; skipped under -short")
	}
	t.Fatal("chromium not found: the /traces page is tested in a real headless browser; install it with `apt-get install -y chromium` (scripts/test.sh does), or set MCPGUARD_CHROMIUM")
	return ""
}

// runChromium loads url headless, with networking features off, in a fresh
// profile, and returns its standard output.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func TestTracesPageInChromium(t *testing.T) {
	bin := chromium(t)
	srv := httptest.NewServer(PageHandler(recordCalls(t)))
	defer srv.Close()

	dom := runChromium(t, bin, "--dump-dom", srv.URL+"/traces")
	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	calls := findAll(doc, func(n *html.Node) bool { return n.Data == "tbody" && hasClass(n, "call") })
	if len(calls) != 2 {
		t.Fatalf("page shows %d calls, want 2:\n%s", len(calls), dom)
	}
	// Newest first: the denied call, then the allowed one.
	if !hasClass(calls[0], "deny") || attr(calls[0], "data-tool") != "run_command" || attr(calls[1], "data-tool") != "fetch_url" {
		t.Errorf("call order or classes wrong: %q %q", attr(calls[0], "class"), attr(calls[1], "class"))
	}
	badge := findAll(calls[0], func(n *html.Node) bool { return hasClass(n, "badge") })
	if len(badge) != 2 || text(badge[0]) != "deny" {
		t.Errorf("deny badges: %d", len(badge))
	}
	if rule := findAll(calls[0], func(n *html.Node) bool { return hasClass(n, "rule") }); len(rule) == 0 ||
		text(rule[0]) != "run_command/never" || attr(rule[1], "title") != "shell access is never allowed" {
		t.Error("rule column wrong")
	}
	if reason := findAll(calls[0], func(n *html.Node) bool { return hasClass(n, "reason") }); len(reason) < 2 ||
		text(reason[1]) != "shell access is never allowed" {
		t.Error("reason column wrong")
	}
	// The waterfall: one bar per span, placed by offset and duration.
	rows := findAll(calls[1], func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "span") })
	if len(rows) != 3 {
		t.Fatalf("allowed call has %d span rows, want 3", len(rows))
	}
	wantBars := []struct{ kind, left, width string }{
		{"server", "0.00", "100.00"}, {"internal", "1.00", "1.00"}, {"client", "10.00", "80.00"},
	}
	for i, row := range rows {
		bars := findAll(row, func(n *html.Node) bool { return hasClass(n, "bar") })
		if len(bars) != 1 {
			t.Fatalf("row %d has %d bars", i, len(bars))
		}
		style := attr(bars[0], "style")
		w := wantBars[i]
		if !hasClass(bars[0], w.kind) || style != "left: "+w.left+"%; width: "+w.width+"%" {
			t.Errorf("row %d bar: class %q style %q, want %s left %s width %s", i, attr(bars[0], "class"), style, w.kind, w.left, w.width)
		}
	}
	if hasClass(findAll(calls[0], func(n *html.Node) bool { return hasClass(n, "bar") })[1], "err") == false {
		t.Error("the denied policy span's bar is not marked as an error")
	}

	// Filtering by query: only the denied call.
	dom = runChromium(t, bin, "--dump-dom", srv.URL+"/traces?denied=1")
	doc, _ = html.Parse(bytes.NewReader(dom))
	if n := len(findAll(doc, func(n *html.Node) bool { return n.Data == "tbody" && hasClass(n, "call") })); n != 1 {
		t.Errorf("denied=1 shows %d calls", n)
	}
	dom = runChromium(t, bin, "--dump-dom", srv.URL+"/traces?tool=nothing")
	if !bytes.Contains(dom, []byte(`id="empty"`)) {
		t.Error("an empty filter result does not say so")
	}

	// Rendered pixels: the red bar of the denied call's error span is drawn.
	shot := filepath.Join(t.TempDir(), "traces.png")
	runChromium(t, bin, "--window-size=1200,700", "--hide-scrollbars", "--screenshot="+shot, srv.URL+"/traces")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 700 {
		t.Errorf("screenshot is %v", b)
	}
	red := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 > 0xc0 && g>>8 < 0x40 && b>>8 < 0x50 { // #cf222e
				red++
			}
		}
	}
	if red < 50 {
		t.Errorf("no error bar drawn: %d red pixels in %s", red, shot)
	}
	if os.Getenv("MCPGUARD_KEEP_SCREENSHOT") != "" {
		data, _ := os.ReadFile(shot)
		_ = os.WriteFile(os.Getenv("MCPGUARD_KEEP_SCREENSHOT"), data, 0o644)
	}
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	for _, c := range strings.Fields(attr(n, "class")) {
		if c == class {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}
