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
// (nil, once what was read is answered) or carries what is not a request
// (an error: the sidecar then sees the worker exit and starts another).
// Evaluations run concurrently, each stopped at its budget.
func Serve(r io.Reader, w io.Writer, b rules.RegoBackend) error {
	s := &server{b: b, w: bufio.NewWriter(w), programs: map[uint64]*compilation{}}
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
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
			// Registered before the next request is read, so that an
			// evaluation sent after it waits for it.
			c := &compilation{done: make(chan struct{})}
			s.mu.Lock()
			s.programs[req.Program] = c
			s.mu.Unlock()
			inFlight.Go(func() { s.compile(req, c) })
		case opEval:
			// The program as it stands when the request is read: a drop
			// read after it does not take it away.
			s.mu.Lock()
			c := s.programs[req.Program]
			s.mu.Unlock()
			inFlight.Go(func() { s.eval(req, c) })
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
	programs map[uint64]*compilation
}

// compilation is a program being compiled or compiled.
type compilation struct {
	done chan struct{} // closed once p or err is set
	p    rules.RegoProgram
	err  error
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

func (s *server) compile(req *request, c *compilation) {
	c.p, c.err = s.b.Compile(req.Modules, req.Queries)
	close(c.done)
	resp := &response{ID: req.ID}
	var res rules.RegoErrors
	switch {
	case errors.As(c.err, &res):
		resp.Errors = res
	case c.err != nil:
		resp.Error = c.err.Error()
	}
	if c.err != nil {
		s.mu.Lock()
		if s.programs[req.Program] == c {
			delete(s.programs, req.Program)
		}
		s.mu.Unlock()
	}
	s.answer(resp)
}

func (s *server) eval(req *request, c *compilation) {
	resp := &response{ID: req.ID}
	values, err := s.run(req, c)
	if err != nil {
		resp.Error = err.Error()
	} else {
		resp.Values = values
	}
	s.answer(resp)
}

func (s *server) run(req *request, c *compilation) ([]any, error) {
	if c == nil {
		return nil, fmt.Errorf("the Rego worker has no program %d", req.Program)
	}
	<-c.done
	if c.err != nil {
		return nil, fmt.Errorf("the Rego worker did not compile program %d: %v", req.Program, c.err)
	}
	p := c.p
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
