package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// JSON-RPC error codes the proxy answers with, beyond JSON-RPC's own. They
// sit in the implementation-defined range -32000..-32099; -32020 is MCP's
// HEADER_MISMATCH (2026-07-28).
const (
	CodeSessionNotFound = -32001
	CodePolicyDenied    = -32003
	CodeUpstream        = -32004
	CodeHeaderMismatch  = -32020
)

// callError is an error the proxy answers with: an HTTP status and a
// JSON-RPC error. Every one is built in this file; the only answers written
// elsewhere are plain HTTP refusals before any JSON-RPC is read (a wrong
// HTTP method or Accept header, http.Error) and the gateway's own errors,
// relayed.
type callError struct {
	status int
	code   int64
	msg    string
	data   json.RawMessage
}

func (e *callError) Error() string { return e.msg }

func (e *callError) rpc() *jsonrpc.Error {
	return &jsonrpc.Error{Code: e.code, Message: e.msg, Data: e.data}
}

func errParse(err error) *callError {
	return &callError{status: http.StatusBadRequest, code: jsonrpc.CodeParseError, msg: "parse error: " + err.Error()}
}

func errInvalid(format string, args ...any) *callError {
	return &callError{status: http.StatusBadRequest, code: jsonrpc.CodeInvalidRequest, msg: fmt.Sprintf(format, args...)}
}

func errInvalidParams(msg string) *callError {
	return &callError{status: http.StatusBadRequest, code: jsonrpc.CodeInvalidParams, msg: msg}
}

func errTooLarge(limit int) *callError {
	return &callError{status: http.StatusRequestEntityTooLarge, code: jsonrpc.CodeInvalidRequest,
		msg: fmt.Sprintf("request body exceeds the %d-byte limit", limit)}
}

func errBodyTimeout(d time.Duration) *callError {
	return &callError{status: http.StatusRequestTimeout, code: jsonrpc.CodeInvalidRequest,
		msg: fmt.Sprintf("the request body did not arrive within %s", d)}
}

func errMediaType(ct string) *callError {
	return &callError{status: http.StatusUnsupportedMediaType, code: jsonrpc.CodeInvalidRequest,
		msg: fmt.Sprintf("unsupported Content-Type %q: send application/json", ct)}
}

func errSessionNotFound(id string) *callError {
	return &callError{status: http.StatusNotFound, code: CodeSessionNotFound,
		msg: fmt.Sprintf("session %q not found or expired: send a new initialize request", id)}
}

func errSessionRequired() *callError {
	return &callError{status: http.StatusBadRequest, code: jsonrpc.CodeInvalidRequest,
		msg: "missing Mcp-Session-Id header: send initialize first (or declare protocol version 2026-07-28 to call statelessly)"}
}

func errSessionOwner() *callError {
	return &callError{status: http.StatusForbidden, code: jsonrpc.CodeInvalidRequest,
		msg: "session belongs to another caller: its credentials do not match the ones that created it"}
}

func errRebinding(header, value string) *callError {
	return &callError{status: http.StatusForbidden, code: jsonrpc.CodeInvalidRequest,
		msg: fmt.Sprintf("%s %q is not a loopback name on a loopback listener: refused as a possible DNS rebinding attack; connect as localhost, 127.0.0.1 or [::1]", header, value)}
}

func errHeaderMismatch(err error) *callError {
	return &callError{status: http.StatusBadRequest, code: CodeHeaderMismatch, msg: err.Error()}
}

func errProtocolVersion(format string, args ...any) *callError {
	return &callError{status: http.StatusBadRequest, code: jsonrpc.CodeInvalidRequest, msg: fmt.Sprintf(format, args...)}
}

func errUnavailable(format string, args ...any) *callError {
	return &callError{status: http.StatusServiceUnavailable, code: jsonrpc.CodeInternalError, msg: fmt.Sprintf(format, args...)}
}

// errUpstream reports a gateway that could not be reached or answered badly.
func errUpstream(err error) *callError {
	return &callError{status: http.StatusBadGateway, code: CodeUpstream, msg: "upstream error: " + err.Error()}
}

func errUpstreamTimeout(err error) *callError {
	return &callError{status: http.StatusGatewayTimeout, code: CodeUpstream, msg: "upstream timeout: " + err.Error()}
}

// errTooManyServerRequests answers, to the gateway, a server→client request
// the proxy did not relay because the agent has too many unanswered.
func errTooManyServerRequests(limit int) *callError {
	return &callError{status: http.StatusServiceUnavailable, code: jsonrpc.CodeInternalError,
		msg: fmt.Sprintf("refused by mcpguard: the agent has %d server requests unanswered already; answer or cancel those first", limit)}
}

func errTooManyCalls(limit int) *callError {
	return &callError{status: http.StatusServiceUnavailable, code: jsonrpc.CodeInternalError,
		msg: fmt.Sprintf("refused by mcpguard: %d calls whose results the policy screens are unanswered already; retry when some are answered", limit)}
}

// errorFromDecode maps a codec error.
func errorFromDecode(err error) *callError {
	switch e := err.(type) {
	case *jsonrpc.SizeError:
		return errTooLarge(e.Limit)
	case *jsonrpc.DecodeError:
		if e.Code == jsonrpc.CodeParseError {
			return errParse(e.Err)
		}
		return errInvalid("invalid request: %v", e.Err)
	}
	return errInvalid("invalid request: %v", err)
}

// decodeErrorID is the id to answer a refused message with: its own when
// the codec could read it, so the client can match the refusal.
func decodeErrorID(err error) jsonrpc.ID {
	var de *jsonrpc.DecodeError
	if errors.As(err, &de) && !de.ID.IsZero() {
		return de.ID
	}
	return jsonrpc.NullID
}

// deniedData is the error data of a policy denial: enough for a person (or
// a model) to see which rule said no and why.
type deniedData struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	Tool   string `json:"tool,omitempty"`
	// RetryAfter, for a rate limit or budget, is when to retry, in whole
	// seconds (rounded up).
	RetryAfter int64 `json:"retryAfter,omitempty"`
}

// denial builds the answer to a request the policy blocked, in the form
// DenyAs asks for. It returns the HTTP status the answer warrants on its own.
func denial(denyAs DenyAs, req *jsonrpc.Message, tool string, d rules.Decision) (*jsonrpc.Message, int) {
	msg := fmt.Sprintf("denied by mcpguard policy (rule %s): %s", d.Rule, d.Explain())
	if mt, _ := rules.MethodOf(req.Method); denyAs == DenyToolError && mt.Target == rules.ToolCall {
		result, _ := json.Marshal(toolErrorResult{
			Content: []textContent{{Type: "text", Text: msg}},
			IsError: true,
		})
		return &jsonrpc.Message{ID: req.ID, Result: result}, http.StatusOK
	}
	data, _ := json.Marshal(deniedData{Rule: d.Rule, Reason: d.Explain(), Tool: tool, RetryAfter: ceilSeconds(d.RetryAfter)})
	resp := &jsonrpc.Message{ID: req.ID, Error: &jsonrpc.Error{Code: CodePolicyDenied, Message: msg, Data: data}}
	if denyAs == DenyHTTP403 {
		return resp, http.StatusForbidden
	}
	return resp, http.StatusOK
}

// errDenied refuses a notification, which cannot be answered, that the
// policy (or the method table) refused; over HTTP it answers the POST.
func errDenied(d rules.Decision) *callError {
	data, _ := json.Marshal(deniedData{Rule: d.Rule, Reason: d.Explain()})
	return &callError{status: http.StatusForbidden, code: CodePolicyDenied, data: data,
		msg: fmt.Sprintf("denied by mcpguard policy (rule %s): %s", d.Rule, d.Explain())}
}

type toolErrorResult struct {
	Content []textContent `json:"content"`
	IsError bool          `json:"isError"`
}

type textContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// writeError answers a whole HTTP request with one JSON-RPC error.
func writeError(w http.ResponseWriter, id jsonrpc.ID, e *callError) {
	if id.IsZero() {
		id = jsonrpc.NullID
	}
	writeMessage(w, e.status, &jsonrpc.Message{ID: id, Error: e.rpc()})
}

// answerBufs holds encode buffers for answers: Write copies or sends the
// body before it returns, so the buffer can serve the next answer, and a
// 64 KiB answer does not cost a 64 KiB allocation.
var answerBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledAnswer bounds the buffers kept: one huge answer must not pin its
// memory in the pool.
const maxPooledAnswer = 256 << 10

func writeMessage(w http.ResponseWriter, status int, m *jsonrpc.Message) {
	buf := answerBufs.Get().(*[]byte)
	body, err := m.AppendJSON((*buf)[:0])
	if err != nil {
		http.Error(w, "internal error encoding a response", http.StatusInternalServerError)
		return
	}
	writeJSON(w, status, body)
	if cap(body) <= maxPooledAnswer {
		*buf = body[:0]
		answerBufs.Put(buf)
	}
}

// writeJSON writes a whole JSON answer in one go, its length declared:
// net/http finds the length of a body that fits its 2 KiB buffer by itself,
// but only when the handler returns unflushed; a longer one, or one flushed
// before the handler returns (httpOut), would be sent in chunks.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeAccepted answers 202 with an empty body, its length declared (see
// writeJSON).
func writeAccepted(w http.ResponseWriter) {
	w.Header()["Content-Length"] = contentLengthZero
	w.WriteHeader(http.StatusAccepted)
}

// Header values shared by every answer: net/http only reads them.
var (
	contentTypeJSON   = []string{"application/json"}
	contentLengthZero = []string{"0"}
)

// ceilSeconds is d in whole seconds, rounded up; 0 for none.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// quote writes s as a JSON string, for error messages that name a value.
func quote(s string) string { return string(jsonrpc.AppendString(nil, s)) }
