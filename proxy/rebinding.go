package proxy

import "net/http"

// RefuseRebinding serves h behind the MCP listener's DNS rebinding check
// (checkRebinding): on a loopback connection, a Host or Origin that is not
// a loopback name is answered 403. It is for mcpguard's other listeners,
// whose pages a rebound name would otherwise read from a browser: the admin
// listener's /debug/traces and /traces (session ids, tools, denial reasons),
// /metrics and /debug/pprof (issue #14).
func RefuseRebinding(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cerr := checkRebinding(r); cerr != nil {
			http.Error(w, cerr.msg, cerr.status)
			return
		}
		h.ServeHTTP(w, r)
	})
}
