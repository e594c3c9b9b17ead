package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The approval queue's commands: `mcpguard approvals` lists the calls a
// running proxy holds for a person's approval (a rule's action "confirm",
// spec.approval.fallback "queue"), `mcpguard approve ID` lets one through
// and `mcpguard deny ID` refuses it. They talk to the admin listener, which
// serves /approvals/ to loopback clients only.

// adminTarget is the flags that say which running proxy to talk to.
type adminTarget struct {
	admin  string
	server string
}

func (t *adminTarget) flags(cmd *cobra.Command) {
	t.admin = "http://127.0.0.1:9901"
	f := cmd.Flags()
	f.StringVar(&t.admin, "admin", t.admin, "the proxy's admin listener, host:port or URL (env MCPGUARD_ADMIN)")
	f.StringVarP(&t.server, "server", "s", "", "the running wrap or connect instance wrapping this server (its name in the client's configuration)")
}

// base returns the admin listener's URL.
func (t *adminTarget) base(ctx context.Context, cmd *cobra.Command) (string, error) {
	admin := t.admin
	if t.server != "" {
		if cmd.Flags().Changed("admin") {
			return "", &exitError{code: exitUsage, err: fmt.Errorf("--server and --admin exclude each other: choose one")}
		}
		a, err := instanceAdmin(ctx, t.server)
		if err != nil {
			return "", &exitError{code: exitUsage, err: err}
		}
		admin = a
	}
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	u, err := url.Parse(strings.TrimSuffix(admin, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", &exitError{code: exitUsage, err: fmt.Errorf("admin: %q is not host:port or an http(s) URL, e.g. 127.0.0.1:9901", admin)}
	}
	return u.String(), nil
}

// pendingCall is one entry of GET /approvals/.
type pendingCall struct {
	ID        string          `json:"id"`
	Tool      string          `json:"tool"`
	Rule      string          `json:"rule"`
	Session   string          `json:"session"`
	Arguments json.RawMessage `json:"arguments"`
	Since     time.Time       `json:"since"`
	Expires   time.Time       `json:"expires"`
}

func newApprovalsCmd() *cobra.Command {
	var t adminTarget
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List the calls a running proxy holds for a person's approval",
		Long: `List the calls waiting on a running proxy's approval queue: calls of a rule whose
action is "confirm" from an agent whose client cannot ask its user (no MCP
elicitation), under spec.approval.fallback "queue". Each line gives the ID that
'mcpguard approve ID' or 'mcpguard deny ID' takes, the tool, the rule, the
arguments (secrets redacted) and how long is left before the call is denied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := t.base(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			res, err := adminDo(cmd.Context(), http.MethodGet, base+"/approvals/")
			if err != nil {
				return err
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return adminRefused(res)
			}
			var list []pendingCall
			if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&list); err != nil {
				return fmt.Errorf("%s: reading the queue: %v", base, err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				for _, c := range list {
					line, _ := json.Marshal(c)
					fmt.Fprintf(w, "%s\n", line)
				}
				return nil
			}
			if len(list) == 0 {
				fmt.Fprintln(w, "no calls await approval")
				return nil
			}
			for _, c := range list {
				left := time.Until(c.Expires).Round(time.Second)
				fmt.Fprintf(w, "%s  %s  rule %s  %s left  %s\n", c.ID, c.Tool, c.Rule, left, c.Arguments)
			}
			return nil
		},
	}
	t.flags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each call as a JSON line")
	return cmd
}

// newApproveCmd is `mcpguard approve ID` (accept) or `mcpguard deny ID`.
func newApproveCmd(accept bool) *cobra.Command {
	var t adminTarget
	use, verb, action := "deny ID", "Refuse", "deny"
	if accept {
		use, verb, action = "approve ID", "Let through", "approve"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: verb + " a call waiting on a running proxy's approval queue",
		Long: verb + ` the call with this ID (from 'mcpguard approvals' or the proxy's
"a call awaits approval" log line). Exits 1 when no call awaits approval as ID:
already answered, timed out, or never queued.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			base, err := t.base(cmd.Context(), cmd)
			if err != nil {
				return err
			}
			res, err := adminDo(cmd.Context(), http.MethodPost, base+"/approvals/"+url.PathEscape(args[0])+"/"+action)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			switch res.StatusCode {
			case http.StatusNoContent, http.StatusOK:
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %sd\n", args[0], strings.TrimSuffix(action, "e"))
				return nil
			case http.StatusNotFound:
				msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
				return &exitError{code: exitFail, err: fmt.Errorf("%s", strings.TrimSpace(string(msg)))}
			}
			return adminRefused(res)
		},
	}
	t.flags(cmd)
	return cmd
}

func adminDo(ctx context.Context, method, u string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		cancel()
		return nil, &exitError{code: exitUsage, err: err}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("the proxy's admin listener: %v", err)}
	}
	body := res.Body
	res.Body = struct {
		io.Reader
		io.Closer
	}{body, closerFunc(func() error { defer cancel(); return body.Close() })}
	return res, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func adminRefused(res *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	return &exitError{code: exitUsage, err: fmt.Errorf("the admin listener answered %s: %s", res.Status, strings.TrimSpace(string(msg)))}
}
