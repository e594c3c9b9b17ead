package telemetry

import (
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed ui/traces.html
var uiFiles embed.FS

// pageTemplate is parsed when the page is first asked for, not in every
// process at start (issue #18).
var pageTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.ParseFS(uiFiles, "ui/traces.html"))
})

// page is what ui/traces.html renders.
type page struct {
	Buffer   int
	Filter   Filter
	Filtered bool
	Refresh  int
	Calls    []pageCall
}

type pageCall struct {
	TraceID, Tool, Session, Decision string
	Rows                             []pageRow
}

// pageRow is one span of the waterfall; Left and Width are percentages of
// the call's duration.
type pageRow struct {
	SpanID, Name, Kind, Decision, Rule, Reason, Outcome string
	Time, Offset, Duration                              string
	Depth                                               int
	Indent                                              float64
	Left, Width                                         string
	Err                                                 bool
}

// PageHandler serves the kept calls as an HTML page with a waterfall per
// call (GET /traces; query as for /debug/traces, plus refresh=SECONDS).
// Everything is rendered on the server: the page needs no script.
func PageHandler(r *Ring) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		f, err := FilterFromQuery(q)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if f.Limit == 0 {
			f.Limit = 200
		}
		pg := page{Buffer: r.Size(), Filter: f, Filtered: f.Denied || f.Tool != "" || f.Session != ""}
		if s := q.Get("refresh"); s != "" {
			if n, err := strconv.Atoi(s); err == nil && n > 0 {
				pg.Refresh = n
			}
		}
		calls := Calls(r.Spans(), f)
		for i := len(calls) - 1; i >= 0; i-- { // newest first
			pg.Calls = append(pg.Calls, pageCallOf(calls[i]))
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
		if err := pageTemplate().Execute(w, pg); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

func pageCallOf(c *Call) pageCall {
	pc := pageCall{TraceID: c.TraceID, Tool: c.Attr(keyTool), Session: c.Attr(keySession), Decision: c.Decision()}
	total := c.Duration()
	var walk func(n *Call, depth int)
	walk = func(n *Call, depth int) {
		row := pageRow{SpanID: n.SpanID, Name: n.Name, Kind: strings.ToLower(n.Kind), Depth: depth,
			Indent: 0.4 + 1.2*float64(depth), Decision: n.Attr(keyDecision), Rule: n.Attr(keyRule),
			Reason: n.Attr(keyReason), Offset: fmtDuration(n.Start.Sub(c.Start)), Duration: fmtDuration(n.Duration()),
			Err: n.Error != ""}
		if depth == 0 {
			row.Time = n.Start.Local().Format("15:04:05.000")
			row.Outcome = c.Outcome()
			if row.Decision == "" {
				row.Decision, row.Rule = c.Decision(), c.Rule()
			}
		} else if t := n.Attr(keyErrType); t != "" {
			row.Outcome = "error " + t
		}
		row.Left, row.Width = percent(n.Start.Sub(c.Start), total), percent(n.Duration(), total)
		pc.Rows = append(pc.Rows, row)
		for _, ch := range n.Children {
			walk(ch, depth+1)
		}
	}
	walk(c, 0)
	return pc
}

func percent(d, total time.Duration) string {
	if total <= 0 {
		return "0"
	}
	p := 100 * float64(d) / float64(total)
	p = min(max(p, 0), 100)
	return fmt.Sprintf("%.2f", p)
}
