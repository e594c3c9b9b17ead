// Package regoworker evaluates a policy's Rego in a child process, for the
// sidecar build, which links no OPA (issue #18: OPA's package
// initialisation cost every sidecar a third of its binary and 6–9 ms of CPU
// before ready, though the shipped policy has no Rego).
//
// Backend is a rules.RegoBackend that starts the worker, cmd/mcpguard-rego
// (package rules and its in-process backend, rules/rego, and nothing else),
// the first time a policy with Rego modules is compiled; a policy without
// any starts nothing. Serve is the worker's side.
//
// The two talk over the worker's standard input and output, one JSON object
// a line, each request with an id its answer repeats, so checks in flight
// at once are answered as each finishes:
//
//	→ {"id":1,"op":"compile","program":1,"modules":[{"name":"p.yaml#...","text":"package x ..."}],"queries":["data.x.d"]}
//	← {"id":1}                                   or {"id":1,"errors":[{"module":0,"file":"...","row":3,"code":"rego_parse_error","message":"..."}]}
//	→ {"id":2,"op":"eval","program":1,"query":"data.x.d","budget":350000000,"input":{"method":"tools/call",...,"arguments":{...}}}
//	← {"id":2,"values":[{"allow":true}]}         or {"id":2,"error":"..."}
//	→ {"id":3,"op":"drop","program":1}           (no answer: the program is no longer used)
//
// The worker ends when its standard input does (the sidecar exited, however
// it exited), and on Linux the kernel kills it when the sidecar dies
// (Pdeathsig). It ignores SIGINT and SIGTERM: a terminal's Ctrl-C or a
// process-group signal reaches it with the sidecar, which still needs it
// while it drains.
package regoworker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"mcpguard.dev/mcpguard/rules"
)

// The operations of a request.
const (
	opCompile = "compile"
	opEval    = "eval"
	opDrop    = "drop"
)

// request is one line from the sidecar to the worker.
type request struct {
	ID      uint64             `json:"id"`
	Op      string             `json:"op"`
	Program uint64             `json:"program"`
	Modules []rules.RegoSource `json:"modules,omitempty"` // compile
	Queries []string           `json:"queries,omitempty"` // compile
	Query   string             `json:"query,omitempty"`   // eval
	// Budget is how long the evaluation may run, in nanoseconds; the
	// sidecar stops waiting a little before the worker stops evaluating.
	Budget int64      `json:"budget,omitempty"`
	Input  *wireInput `json:"input,omitempty"` // eval
}

// wireInput is rules.RegoInput on the wire: the arguments as the canonical
// JSON the policy decided on, which the worker decodes as rules does
// (numbers as json.Number).
type wireInput struct {
	Method          string          `json:"method"`
	Tool            string          `json:"tool"`
	Name            string          `json:"name"`
	Prefix          string          `json:"prefix"`
	Server          string          `json:"server"`
	Session         string          `json:"session"`
	ProtocolVersion string          `json:"protocolVersion"`
	Identity        rules.Identity  `json:"identity"`
	Arguments       json.RawMessage `json:"arguments"`
}

// response is one line from the worker to the sidecar.
type response struct {
	ID     uint64           `json:"id"`
	Values []any            `json:"values,omitempty"` // eval: the query's value per result
	Errors rules.RegoErrors `json:"errors,omitempty"` // compile: the policy's problems
	Error  string           `json:"error,omitempty"`  // the operation failed
}

// maxLine bounds one line either way. A request carries a call's
// arguments, which the proxy bounds (--max-body-bytes, 4 MiB by default),
// or a policy's modules; an answer, a decision document.
const maxLine = 64 << 20

var errLineTooLong = fmt.Errorf("regoworker: a line longer than %d bytes", maxLine)

// readLine returns the next line without its newline. It is valid until
// the next call. io.EOF: the stream ended between lines.
func readLine(r *bufio.Reader, buf *[]byte) ([]byte, error) {
	*buf = (*buf)[:0]
	for {
		chunk, err := r.ReadSlice('\n')
		if len(*buf)+len(chunk) > maxLine {
			return nil, errLineTooLong
		}
		*buf = append(*buf, chunk...)
		switch {
		case err == nil:
			return (*buf)[:len(*buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(*buf) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// decodeStrict decodes one JSON value that must be all of line, into v,
// refusing fields v does not have; numbers as json.Number.
func decodeStrict(line []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// decodeRequest decodes and checks one request line.
func decodeRequest(line []byte) (*request, error) {
	var req request
	if err := decodeStrict(line, &req); err != nil {
		return nil, fmt.Errorf("regoworker: request: %w", err)
	}
	switch req.Op {
	case opCompile:
		if len(req.Modules) == 0 {
			return nil, fmt.Errorf("regoworker: request %d: compile without modules", req.ID)
		}
	case opEval:
		if req.Input == nil || req.Budget <= 0 {
			return nil, fmt.Errorf("regoworker: request %d: eval without input or budget", req.ID)
		}
	case opDrop:
	default:
		return nil, fmt.Errorf("regoworker: request %d: unknown op %q", req.ID, req.Op)
	}
	return &req, nil
}

// decodeResponse decodes one answer line.
func decodeResponse(line []byte) (*response, error) {
	var resp response
	if err := decodeStrict(line, &resp); err != nil {
		return nil, fmt.Errorf("regoworker: answer: %w", err)
	}
	return &resp, nil
}

// encodeLine writes v as one line.
func encodeLine(w *bufio.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeLine(w, data)
}

// writeLine writes data, JSON (which holds no raw newline), and a newline,
// and flushes.
func writeLine(w *bufio.Writer, data []byte) error {
	w.Write(data)
	w.WriteByte('\n')
	return w.Flush()
}
