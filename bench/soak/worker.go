//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"mcpguard.dev/mcpguard/bench/loadgen"
)

// op is one kind of request in the mix.
type op int

const (
	opFetch    op = iota // tools/call fetch_url: a plain JSON answer
	opList               // tools/list: filtered by the policy
	opProgress           // tools/call progress_ticks: notifications, then the answer, on an event stream
	opAsk                // tools/call ask_client: an elicitation/create the client answers by POST mid-call
	opAskInput           // tools/call ask_input (stateless): input_required, then the retry with the answer
	nops
)

var opNames = [nops]string{"call fetch_url", "tools/list", "call " + loadgen.ProgressTool, "call " + loadgen.AskTool, "call " + loadgen.AskInputTool}

// mix says which request a worker makes next: every listEvery-th is
// tools/list; of the others every askEvery-th ask_client (session era) or
// ask_input (stateless), every progressEvery-th progress_ticks, the rest
// fetch_url. 0 turns a kind off.
type mix struct {
	listEvery, progressEvery, askEvery int
	ticks                              int // progress notifications per progress_ticks call
	replay                             bool
}

func (m mix) next(seq int, session bool) op {
	switch {
	case seq%m.listEvery == 0:
		return opList
	case m.askEvery > 0 && seq%m.askEvery == 0:
		if !session {
			return opAskInput
		}
		return opAsk
	case m.progressEvery > 0 && seq%m.progressEvery == 0:
		return opProgress
	}
	return opFetch
}

// worker is one session-era session ('s') or one stateless client ('x'),
// used by one goroutine.
type worker struct {
	hc      *http.Client
	gw      *loadgen.Gateway
	url     string
	kind    byte
	index   int
	session string // Mcp-Session-Id; "" for stateless
	mix     mix
	seq     int

	requests [nops]int
	lat      [nops][]time.Duration
	progress int // progress notifications received, each checked
	dropped  int // progress notifications the gateway never wrote (see loadgen.Gateway)
	asks     int // server→client requests answered
	errs     map[string]int
	sample   map[string]string // one example per error kind
}

func newWorker(hc *http.Client, gw *loadgen.Gateway, url string, kind byte, index int, session string, m mix) *worker {
	return &worker{hc: hc, gw: gw, url: url, kind: kind, index: index, session: session, mix: m,
		errs: map[string]int{}, sample: map[string]string{}}
}

func (w *worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		w.seq++
		o := w.mix.next(w.seq, w.session != "")
		t0 := time.Now()
		kind, detail := w.do(ctx, o)
		if kind == "canceled" {
			// The run's end cut this request off: not counted.
			return
		}
		w.requests[o]++
		if kind != "" {
			w.errs[kind]++
			if _, ok := w.sample[kind]; !ok {
				w.sample[kind] = detail
			}
			continue
		}
		w.lat[o] = append(w.lat[o], time.Since(t0))
	}
}

// The params._meta keys every 2026-07-28 request carries.
const (
	metaVersion      = "io.modelcontextprotocol/protocolVersion"
	metaCapabilities = "io.modelcontextprotocol/clientCapabilities"
)

type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      string `json:"id"`
	Method  string `json:"method"`
	Params  params `json:"params"`
}

type params struct {
	Name           string         `json:"name,omitempty"`
	Arguments      map[string]any `json:"arguments,omitempty"`
	Meta           map[string]any `json:"_meta,omitempty"`
	InputResponses map[string]any `json:"inputResponses,omitempty"`
	RequestState   string         `json:"requestState,omitempty"`
}

// message is what arrives in an answer: a response (id with result or
// error) or, on an event stream, a notification or request from the server.
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result *struct {
		ResultType    string `json:"resultType"`
		InputRequests map[string]struct {
			Method string `json:"method"`
			Params struct {
				Message string `json:"message"`
			} `json:"params"`
		} `json:"inputRequests"`
		RequestState string `json:"requestState"`
		IsError      bool   `json:"isError"`
		Tools        []struct {
			Name string `json:"name"`
		} `json:"tools"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call is one request's bookkeeping while its answer streams in.
type call struct {
	id       string
	op       op
	progress []int64  // progress values received, in order
	asked    []string // ids of the server requests answered
	answer   *message
}

// violation is a failed check: its kind for the table and an example.
type violation struct{ kind, detail string }

func (v *violation) Error() string { return v.kind + ": " + v.detail }

func fail(kind, format string, args ...any) *violation {
	return &violation{kind: kind, detail: fmt.Sprintf(format, args...)}
}

// do makes one request and returns "" or the kind of its failure, with a
// detail for the report.
func (w *worker) do(ctx context.Context, o op) (kind, detail string) {
	c := &call{id: fmt.Sprintf("%c%d-%d", w.kind, w.index, w.seq), op: o}
	req := request{JSONRPC: "2.0", ID: c.id, Method: "tools/call"}
	switch o {
	case opList:
		req.Method = "tools/list"
	case opFetch:
		req.Params.Name = "fetch_url"
		req.Params.Arguments = map[string]any{"url": loadgen.FetchURL}
	case opProgress:
		// The call's own id is its progress token: a notification carrying
		// any other token belongs to some other call.
		req.Params.Name = loadgen.ProgressTool
		req.Params.Arguments = map[string]any{"count": w.mix.ticks}
		req.Params.Meta = map[string]any{"progressToken": c.id}
	case opAsk:
		req.Params.Name = loadgen.AskTool
		req.Params.Arguments = map[string]any{"question": "which call is this?"}
	case opAskInput:
		req.Params.Name = loadgen.AskInputTool
		req.Params.Arguments = map[string]any{"question": "which call is this?"}
	}
	if kind, detail := w.send(ctx, req, c); kind != "" {
		return kind, detail
	}
	if v := w.check(ctx, c, req); v != nil {
		if ctx.Err() != nil {
			return "canceled", ""
		}
		return v.kind, v.detail
	}
	return "", ""
}

// send POSTs req and reads its answer into c.
func (w *worker) send(ctx context.Context, req request, c *call) (kind, detail string) {
	o := c.op
	if w.session == "" {
		if req.Params.Meta == nil {
			req.Params.Meta = map[string]any{}
		}
		req.Params.Meta[metaVersion] = statelessVersion
		req.Params.Meta[metaCapabilities] = map[string]any{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "encode", err.Error()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return "encode", err.Error()
	}
	w.headers(hr)
	if w.session == "" {
		hr.Header["Mcp-Method"] = []string{req.Method}
		if req.Params.Name != "" {
			hr.Header["Mcp-Name"] = []string{req.Params.Name}
		}
	}
	res, err := w.hc.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return "canceled", ""
		}
		return "transport", err.Error()
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		return "HTTP " + strconv.Itoa(res.StatusCode), fmt.Sprintf("%s %s: %.200s", opNames[o], c.id, data)
	}
	err = readAnswer(res, func(m *message) error { return w.onMessage(ctx, c, m) })
	if err != nil {
		if ctx.Err() != nil {
			return "canceled", ""
		}
		if v, ok := errors.AsType[*violation](err); ok {
			return v.kind, v.detail
		}
		return "bad answer", fmt.Sprintf("%s %s: %v", opNames[o], c.id, err)
	}
	return "", ""
}

// headers sets what every POST of this worker carries.
func (w *worker) headers(hr *http.Request) {
	hr.Header["Content-Type"] = []string{"application/json"}
	hr.Header["Accept"] = []string{"application/json, text/event-stream"}
	if w.session != "" {
		hr.Header["Mcp-Session-Id"] = []string{w.session}
		hr.Header["Mcp-Protocol-Version"] = []string{loadgen.ProtocolVersion}
	} else {
		hr.Header["Mcp-Protocol-Version"] = []string{statelessVersion}
	}
}

// onMessage checks one message of c's answer as it arrives, and answers a
// server request at once: the call cannot finish before it is answered.
func (w *worker) onMessage(ctx context.Context, c *call, m *message) error {
	name := opNames[c.op]
	switch {
	case m.Method != "" && len(m.ID) > 0: // a server→client request
		if c.op != opAsk || m.Method != "elicitation/create" {
			return fail("unexpected server request", "%s %s: got %s %s", name, c.id, m.Method, m.ID)
		}
		if c.answer != nil {
			return fail("server request after the answer", "%s %s: %s %s", name, c.id, m.Method, m.ID)
		}
		if slices.Contains(c.asked, string(m.ID)) {
			return fail("server request relayed twice", "%s %s: %s %s", name, c.id, m.Method, m.ID)
		}
		c.asked = append(c.asked, string(m.ID))
		// The answer names this call, so the tool result shows whose
		// answer reached the handler.
		if v := w.answerServer(ctx, m.ID, c.id, http.StatusAccepted); v != nil {
			v.detail = fmt.Sprintf("%s %s: %s", name, c.id, v.detail)
			return v
		}
		w.asks++
	case m.Method == "notifications/progress":
		var p struct {
			Token    json.RawMessage `json:"progressToken"`
			Progress json.Number     `json:"progress"`
			Total    json.Number     `json:"total"`
		}
		if err := json.Unmarshal(m.Params, &p); err != nil {
			return fail("bad progress", "%s %s: %v: %s", name, c.id, err, m.Params)
		}
		want, _ := json.Marshal(c.id)
		if c.op != opProgress || !bytes.Equal(p.Token, want) {
			return fail("progress crossed", "%s %s got progress for token %s", name, c.id, p.Token)
		}
		if c.answer != nil {
			return fail("progress after the answer", "%s %s: progress %s", name, c.id, p.Progress)
		}
		n, err := p.Progress.Int64()
		if err != nil || (len(c.progress) > 0 && n <= c.progress[len(c.progress)-1]) {
			return fail("progress out of order", "%s %s: progress %s after %v", name, c.id, p.Progress, c.progress)
		}
		c.progress = append(c.progress, n)
		w.progress++
	case m.Method != "":
		// Another notification (logging, list changed): not this soak's.
	default:
		want, _ := json.Marshal(c.id)
		if !bytes.Equal(m.ID, want) {
			return fail("crossed id", "%s %s answered with id %s", name, c.id, m.ID)
		}
		if c.answer != nil {
			return fail("duplicated", "%s %s answered twice", name, c.id)
		}
		c.answer = m
	}
	return nil
}

// check judges c's answer to req once its stream has ended.
func (w *worker) check(ctx context.Context, c *call, req request) *violation {
	name, m := opNames[c.op], c.answer
	switch {
	case m == nil:
		return fail("lost", "%s %s: no response with its id", name, c.id)
	case m.Error != nil:
		return fail("JSON-RPC "+strconv.Itoa(m.Error.Code), "%s %s: %s", name, c.id, m.Error.Message)
	case m.Result == nil:
		return fail("bad answer", "%s %s: neither result nor error", name, c.id)
	case m.Result.IsError:
		return fail("tool error", "%s %s: %.200v", name, c.id, m.Result.Content)
	}
	var text string
	if len(m.Result.Content) == 1 {
		text = m.Result.Content[0].Text
	}
	switch c.op {
	case opList:
		var names []string
		for _, t := range m.Result.Tools {
			names = append(names, t.Name)
		}
		for _, want := range []string{"fetch_url", "get_time", loadgen.ProgressTool, loadgen.AskTool, loadgen.AskInputTool} {
			if !slices.Contains(names, want) {
				return fail("tools/list incomplete", "%s: tools %v", c.id, names)
			}
		}
	case opProgress:
		if want := fmt.Sprintf("ticked %d for %s", w.mix.ticks, c.id); text != want {
			return fail("progress result wrong", "%s %s: %q, want %q", name, c.id, text, want)
		}
		token, _ := json.Marshal(c.id)
		written := w.gw.ProgressWritten(token)
		w.dropped += w.mix.ticks - written
		if len(c.progress) != written {
			return fail("progress lost", "%s %s: the gateway wrote %d notifications, %d arrived: %v", name, c.id, written, len(c.progress), c.progress)
		}
	case opAskInput:
		// The first answer asks for input (and carries no content); the
		// retry with this call's answer gets the tool's result.
		q, ok := m.Result.InputRequests["q"]
		if m.Result.ResultType != "input_required" || len(m.Result.InputRequests) != 1 || !ok ||
			q.Method != "elicitation/create" || q.Params.Message != req.Params.Arguments["question"] || m.Result.RequestState != "asked" {
			return fail("input request wrong", "%s %s: %+v", name, c.id, *m.Result)
		}
		retry := req
		retry.ID = c.id + "-retry"
		retry.Params.InputResponses = map[string]any{"q": map[string]any{"action": "accept", "content": map[string]any{"answer": c.id}}}
		retry.Params.RequestState = m.Result.RequestState
		rc := &call{id: retry.ID, op: opAskInput}
		if kind, detail := w.send(ctx, retry, rc); kind != "" {
			return fail(kind, "%s", detail)
		}
		switch r := rc.answer; {
		case r == nil:
			return fail("lost", "%s %s: no response with its id", name, rc.id)
		case r.Error != nil:
			return fail("JSON-RPC "+strconv.Itoa(r.Error.Code), "%s %s: %s", name, rc.id, r.Error.Message)
		case r.Result == nil || r.Result.IsError || len(r.Result.Content) != 1 || r.Result.ResultType == "input_required":
			return fail("bad answer", "%s %s: %+v", name, rc.id, r.Result)
		case r.Result.Content[0].Text != "the client answered "+c.id:
			return fail("server answer crossed", "%s %s: %q, want %q", name, rc.id, r.Result.Content[0].Text, "the client answered "+c.id)
		}
		w.asks++
	case opAsk:
		if len(c.asked) != 1 {
			return fail("server request missing", "%s %s: answered without asking", name, c.id)
		}
		if want := "the client answered " + c.id; text != want {
			return fail("server answer crossed", "%s %s: %q, want %q", name, c.id, text, want)
		}
		if w.mix.replay {
			// The server request is answered: a second answer must be
			// refused, not forwarded to the gateway.
			if v := w.answerServer(ctx, json.RawMessage(c.asked[0]), c.id, http.StatusBadRequest); v != nil {
				v.kind = "second answer not refused"
				v.detail = fmt.Sprintf("%s %s: %s", name, c.id, v.detail)
				return v
			}
		}
	}
	return nil
}

// answerServer POSTs the client's answer to the server request id and
// checks the status.
func (w *worker) answerServer(ctx context.Context, id json.RawMessage, answer string, want int) *violation {
	body, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result"`
	}{"2.0", id, map[string]any{"action": "accept", "content": map[string]string{"answer": answer}}})
	if err != nil {
		return fail("encode", "%v", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fail("encode", "%v", err)
	}
	w.headers(hr)
	res, err := w.hc.Do(hr)
	if err != nil {
		return fail("transport", "answering %s: %v", id, err)
	}
	data, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	res.Body.Close()
	if res.StatusCode != want {
		return fail("server answer refused", "answering %s: HTTP %d (want %d): %.200s", id, res.StatusCode, want, data)
	}
	return nil
}

// readAnswer passes each JSON-RPC message of an answer to f as it arrives:
// one JSON body, or every data: payload of an event stream, read until the
// stream ends (so a late duplicate or stray message is seen too).
func readAnswer(res *http.Response, f func(*message) error) error {
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		var m message
		data, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("%v: %.200s", err, data)
		}
		return f(&m)
	}
	br := bufio.NewReaderSize(res.Body, 16<<10)
	var payload []byte
	for {
		line, err := br.ReadBytes('\n')
		if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if len(payload) > 0 {
				payload = append(payload, '\n')
			}
			payload = append(payload, bytes.TrimPrefix(v, []byte(" "))...)
			continue
		}
		if len(line) > 0 || len(payload) == 0 {
			continue // id:, event:, retry:, comments; or an empty event
		}
		var m message
		if err := json.Unmarshal(payload, &m); err != nil {
			return fmt.Errorf("%v: %.200s", err, payload)
		}
		payload = payload[:0]
		if err := f(&m); err != nil {
			return err
		}
	}
}
