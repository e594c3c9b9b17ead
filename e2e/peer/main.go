// Command peer is every process of the end-to-end suite's pods, one static
// binary in one image (e2e builds it; no container engine is involved):
//
//	peer gateway   the MCP gateway stand-in: mcpguard's demo gateway (an
//	               mcp-go server with fetch_url, read_file, run_command,
//	               get_time) behind bearer-token authentication checked with
//	               a real TokenReview for one audience; logs each caller
//	peer internet  the stand-in for the internet that fetch_url reaches:
//	               answers for every host; ?delay=5s holds the answer
//	peer agent     an agent container's main process: waits for SIGTERM
//	peer table     a go-sdk MCP client that runs the demo's rows against
//	               $MCP_GATEWAY_URL (the injected sidecar) and prints one
//	               JSON line per row
//	peer call      one tools/call with the go-sdk client; prints a JSON line
//	peer get URL   prints the status and body of a GET (the sidecar's /healthz)
//	peer files     reports which of the given paths exist
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"mcpguard.dev/mcpguard/internal/demo"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer gateway|internet|agent|table|call|files ...")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "gateway":
		err = gateway(args)
	case "internet":
		err = internet(args)
	case "agent":
		// -linger D: an agent finishing its work after SIGTERM (the drain test).
		fs := flag.NewFlagSet("agent", flag.ExitOnError)
		linger := fs.Duration("linger", 0, "")
		_ = fs.Parse(args)
		waitSignal()
		time.Sleep(*linger)
	case "get":
		err = get(args)
	case "table":
		err = table(args)
	case "call":
		err = call(args)
	case "files":
		for _, p := range args {
			_, statErr := os.Stat(p)
			fmt.Printf("%s %v\n", p, statErr == nil)
		}
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer "+cmd+":", err)
		os.Exit(1)
	}
}

func waitSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}

func serve(addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		waitSignal()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// internet answers for every host, as demo.Internet does; ?delay=D holds
// the answer for D (a call in flight while its pod is deleted).
func internet(args []string) error {
	fs := flag.NewFlagSet("internet", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "")
	_ = fs.Parse(args)
	inner := demo.Internet()
	return serve(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 && d < time.Minute {
			log.Printf("delaying %s%s by %v", r.Host, r.URL.RequestURI(), d)
			time.Sleep(d)
		}
		inner.ServeHTTP(w, r)
	}))
}

// gateway is demo.Gateway behind a bearer token that a TokenReview must
// find authenticated for the audience.
func gateway(args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "")
	internetAddr := fs.String("internet", "", "host:port every fetch_url reaches")
	audience := fs.String("audience", "mcp-gateway", "the audience a token must carry")
	_ = fs.Parse(args)
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return err
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	a := &authn{reviews: kc.AuthenticationV1().TokenReviews(), audience: *audience, cache: map[[32]byte]authnResult{}}
	mcpHandler := demo.Gateway(*internetAddr)
	return serve(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		res := authnResult{Reason: "no bearer token"}
		if ok && tok != "" {
			res = a.review(r.Context(), tok)
		}
		line, _ := json.Marshal(map[string]any{"caller": res.User, "audiences": res.Audiences, "authenticated": res.OK,
			"reason": res.Reason, "method": r.Method, "mcpMethod": r.Header.Get("Mcp-Method"), "host": r.Host})
		log.Printf("%s", line)
		if !res.OK {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcp-gateway"`)
			http.Error(w, "unauthorized: "+res.Reason, http.StatusUnauthorized)
			return
		}
		mcpHandler.ServeHTTP(w, r)
	}))
}

type authnResult struct {
	OK        bool
	User      string
	Audiences []string
	Reason    string
	at        time.Time
}

type authn struct {
	reviews interface {
		Create(context.Context, *authnv1.TokenReview, metav1.CreateOptions) (*authnv1.TokenReview, error)
	}
	audience string
	mu       sync.Mutex
	cache    map[[32]byte]authnResult
}

// review asks the apiserver about a token, remembering the answer for 10 s.
func (a *authn) review(ctx context.Context, tok string) authnResult {
	key := sha256.Sum256([]byte(tok))
	a.mu.Lock()
	if r, ok := a.cache[key]; ok && time.Since(r.at) < 10*time.Second {
		a.mu.Unlock()
		return r
	}
	a.mu.Unlock()
	tr, err := a.reviews.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok, Audiences: []string{a.audience}}}, metav1.CreateOptions{})
	var r authnResult
	switch {
	case err != nil:
		r.Reason = "token review: " + err.Error()
	case !tr.Status.Authenticated:
		r.Reason = "not authenticated: " + tr.Status.Error
	default:
		r = authnResult{OK: true, User: tr.Status.User.Username, Audiences: tr.Status.Audiences}
	}
	r.at = time.Now()
	a.mu.Lock()
	a.cache[key] = r
	a.mu.Unlock()
	return r
}

// CallResult is what `peer call` and `peer table` print, one JSON line each.
type CallResult struct {
	Tool    string `json:"tool"`
	Args    string `json:"args"`
	Want    string `json:"want,omitempty"`
	Outcome string `json:"outcome"` // ALLOWED or BLOCKED
	Status  int    `json:"status"`  // HTTP status of the tools/call POST
	Rule    string `json:"rule,omitempty"`
	Text    string `json:"text,omitempty"`
	Error   string `json:"error,omitempty"`
}

// statusRecorder remembers the status and body of the last POST, which the
// client library does not surface.
type statusRecorder struct {
	mu     sync.Mutex
	status int
	body   []byte
	host   string // the Host header, when set
}

func (s *statusRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if s.host != "" {
		req.Host = s.host
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost {
		return resp, err
	}
	var body []byte
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	s.mu.Lock()
	s.status, s.body = resp.StatusCode, body
	s.mu.Unlock()
	return resp, nil
}

func (s *statusRecorder) last() (int, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status, s.body
}

// person stands in for the agent's user when the proxy asks to approve a
// call (MCP elicitation): it answers as the demo row being run says
// (demo.Row.Answer), and declines when no row says.
var person struct {
	sync.Mutex
	answer string
}

func elicit(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
	person.Lock()
	defer person.Unlock()
	if person.answer == "" {
		return &mcp.ElicitResult{Action: "decline"}, nil
	}
	return &mcp.ElicitResult{Action: person.answer}, nil
}

func connect(ctx context.Context, url string, rec *statusRecorder) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpguard-e2e-agent", Version: "1.0.0"}, &mcp.ClientOptions{ElicitationHandler: elicit})
	return c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: rec}, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
}

func callOne(ctx context.Context, cs *mcp.ClientSession, rec *statusRecorder, tool string, args map[string]any) CallResult {
	a, _ := json.Marshal(args)
	r := CallResult{Tool: tool, Args: string(a), Outcome: string(demo.Allowed)}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	status, body := rec.last()
	r.Status = status
	switch {
	case err != nil:
		r.Outcome, r.Error = string(demo.Blocked), err.Error()
		var resp struct {
			Error struct {
				Data struct {
					Rule string `json:"rule"`
				} `json:"data"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &resp) == nil {
			r.Rule = resp.Error.Data.Rule
		}
	case res.IsError:
		r.Outcome = string(demo.Blocked)
		r.Text = textOf(res)
	default:
		r.Text = textOf(res)
		if strings.Contains(r.Text, "[REDACTED:") {
			r.Outcome = string(demo.Redacted)
		}
	}
	return r
}

func textOf(res *mcp.CallToolResult) string {
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			return t.Text
		}
	}
	return ""
}

func table(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	url := fs.String("url", os.Getenv("MCP_GATEWAY_URL"), "")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec := &statusRecorder{}
	cs, err := connect(ctx, *url, rec)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", *url, err)
	}
	defer cs.Close()
	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		return err
	}
	var names []string
	for _, t := range list.Tools {
		names = append(names, t.Name)
	}
	line, _ := json.Marshal(map[string]any{"tools": names})
	fmt.Println(string(line))
	enc := json.NewEncoder(os.Stdout)
	for _, row := range demo.Rows {
		person.Lock()
		person.answer = row.Answer
		person.Unlock()
		// Rows with Times (a rate limit) count only their last call.
		for i := 1; i < row.Times; i++ {
			callOne(ctx, cs, rec, row.Tool, row.Args)
		}
		r := callOne(ctx, cs, rec, row.Tool, row.Args)
		r.Want = string(row.Want)
		_ = enc.Encode(r)
	}
	return nil
}

func call(args []string) error {
	fs := flag.NewFlagSet("call", flag.ExitOnError)
	url := fs.String("url", os.Getenv("MCP_GATEWAY_URL"), "the MCP endpoint")
	host := fs.String("host", "", "Host header")
	timeout := fs.Duration("timeout", time.Minute, "")
	_ = fs.Parse(args)
	if fs.NArg() != 2 {
		return errors.New("usage: peer call [-url U] [-host H] TOOL ARGS-JSON")
	}
	var a map[string]any
	if err := json.Unmarshal([]byte(fs.Arg(1)), &a); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rec := &statusRecorder{host: *host}
	cs, err := connect(ctx, *url, rec)
	if err != nil {
		status, body := rec.last()
		line, _ := json.Marshal(CallResult{Tool: fs.Arg(0), Args: fs.Arg(1), Outcome: string(demo.Blocked), Status: status, Error: err.Error(), Text: string(body)})
		fmt.Println(string(line))
		return nil
	}
	defer cs.Close()
	line, _ := json.Marshal(callOne(ctx, cs, rec, fs.Arg(0), a))
	fmt.Println(string(line))
	return nil
}

func get(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: peer get URL")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Printf("%d %s\n", resp.StatusCode, bytes.TrimSpace(body))
	return nil
}
