package regoworker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/rules"
)

// Serve is the worker: it answers the requests read from r on w, compiling
// and evaluating with b (rules/rego's in-process backend), until r ends
// (nil) or carries what is not a request (an error: the sidecar then sees
// the worker exit and starts another). Evaluations run concurrently, each
// stopped at its budget.
func Serve(r io.Reader, w io.Writer, b rules.RegoBackend) error {
	s := &server{b: b, w: bufio.NewWriter(w), programs: map[uint64]rules.RegoProgram{}}
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for {
		line, err := readLine(br, &buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		req, err := decodeRequest(line)
		if err != nil {
			return err
		}
		switch req.Op {
		case opCompile:
			go s.compile(req)
		case opEval:
			go s.eval(req)
		case opDrop:
			s.mu.Lock()
			delete(s.programs, req.Program)
			s.mu.Unlock()
		}
	}
}

type server struct {
	b rules.RegoBackend

	wmu sync.Mutex // serialises answers
	w   *bufio.Writer

	mu       sync.Mutex
	programs map[uint64]rules.RegoProgram
}

func (s *server) answer(resp *response) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := encodeLine(s.w, resp); err != nil {
		// The sidecar is gone or cannot be written to: nothing is left
		// to answer. Its end of the pipe closing ends Serve.
		return
	}
}

func (s *server) compile(req *request) {
	p, err := s.b.Compile(req.Modules, req.Queries)
	resp := &response{ID: req.ID}
	var res rules.RegoErrors
	switch {
	case errors.As(err, &res):
		resp.Errors = res
	case err != nil:
		resp.Error = err.Error()
	default:
		s.mu.Lock()
		s.programs[req.Program] = p
		s.mu.Unlock()
	}
	s.answer(resp)
}

func (s *server) eval(req *request) {
	resp := &response{ID: req.ID}
	values, err := s.run(req)
	if err != nil {
		resp.Error = err.Error()
	} else {
		resp.Values = values
	}
	s.answer(resp)
}

func (s *server) run(req *request) ([]any, error) {
	s.mu.Lock()
	p := s.programs[req.Program]
	s.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("the Rego worker has no program %d", req.Program)
	}
	in := req.Input
	var args any
	if err := decodeStrict(in.Arguments, &args); err != nil {
		return nil, fmt.Errorf("arguments: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(req.Budget))
	defer cancel()
	return p.Eval(ctx, req.Query, &rules.RegoInput{
		Method: in.Method, Tool: in.Tool, Name: in.Name, Prefix: in.Prefix,
		Server: in.Server, Session: in.Session, ProtocolVersion: in.ProtocolVersion,
		Identity: in.Identity, Arguments: args, ArgumentsJSON: json.RawMessage(in.Arguments),
	})
}
