package regoworker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/rules"
)

// Command is the worker's file name, looked for beside the running
// executable; EnvPath names it elsewhere.
const (
	Command = "mcpguard-rego"
	EnvPath = "MCPGUARD_REGO_WORKER"
)

// Path is where the worker is: $MCPGUARD_REGO_WORKER, or mcpguard-rego in
// the running executable's directory (the image's /usr/local/bin).
func Path() string {
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return Command
	}
	return filepath.Join(filepath.Dir(exe), Command)
}

// How long the worker has beyond a check's budget to answer before it is
// taken for hung, killed and started again; and to compile a policy.
const (
	evalSlack    = 100 * time.Millisecond // the worker's budget beyond the sidecar's wait
	hungAfter    = 2 * time.Second        // past the sidecar's wait
	compileLimit = time.Minute
	// restartEvery bounds how often the worker is started: one that dies
	// at once, every time, is started once a second, not in a loop.
	restartEvery = time.Second
)

// Backend is a rules.RegoBackend that compiles and evaluates in a worker
// process, started the first time a policy with Rego modules is compiled
// and started again, with every program still in use compiled into it,
// when it exits or stops answering. A check in flight when that happens,
// or made while it starts again, is denied (its Eval fails, saying so); a
// compile waits for it.
type Backend struct {
	path string

	mu       sync.Mutex // guards what follows; never held while a worker starts
	log      *slog.Logger
	w        *worker            // the live worker; nil before the first start and after one exits
	starting chan struct{}      // non-nil while a worker starts; closed once it has
	programs map[uint64]*source // every program in use, by id
	nextID   uint64
	started  time.Time // of the last start
	closed   bool
}

// source is what a program was compiled from, to compile it again in a new
// worker.
type source struct {
	modules []rules.RegoSource
	queries []string
}

var _ rules.RegoBackend = (*Backend)(nil)

// New returns a backend that runs the worker at path ("" for Path(), read
// at the first start).
func New(path string) *Backend {
	return &Backend{path: path, programs: map[uint64]*source{}}
}

// SetLogger sets where the worker's exits and restarts are logged
// (slog.Default() until then).
func (b *Backend) SetLogger(l *slog.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log = l
}

func (b *Backend) loggerLocked() *slog.Logger {
	if b.log == nil {
		return slog.Default()
	}
	return b.log
}

// Close stops the worker and keeps it stopped; checks then fail.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.w != nil {
		b.w.kill()
		b.w = nil
	}
}

var errStopped = errors.New("the Rego worker was stopped")

// Compile implements rules.RegoBackend: it sends the modules and queries to
// the worker, starting it first if none runs. Checks of other programs go
// on meanwhile.
func (b *Backend) Compile(modules []rules.RegoSource, queries []string) (rules.RegoProgram, error) {
	b.mu.Lock()
	b.nextID++
	id, src := b.nextID, &source{modules: modules, queries: queries}
	b.mu.Unlock()
	// Again if the worker exits meanwhile: the one started after it did
	// not have this program to compile.
	for range 3 {
		w, err := b.live(true)
		if err != nil {
			return nil, err
		}
		if err := w.compile(id, src); err != nil {
			if w.exited() {
				continue
			}
			return nil, err
		}
		b.mu.Lock()
		live := b.w == w
		if live {
			w.compiled[id] = true
			b.programs[id] = src
		}
		b.mu.Unlock()
		if live {
			p := &program{b: b, id: id}
			runtime.AddCleanup(p, b.drop, id)
			return p, nil
		}
	}
	return nil, errors.New("the Rego worker exited while compiling the policy, three times")
}

// drop forgets program id, which nothing uses any more.
func (b *Backend) drop(id uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.programs, id)
	if w := b.w; w != nil {
		delete(w.compiled, id)
		go w.send(&request{Op: opDrop, Program: id})
	}
}

// live returns the live worker. When none runs it starts one, with every
// program in use compiled into it; when one is starting, or none runs, it
// waits for it if wait is set and otherwise fails (starting it meanwhile).
func (b *Backend) live(wait bool) (*worker, error) {
	b.mu.Lock()
	for b.starting != nil && !b.closed {
		if !wait {
			b.mu.Unlock()
			return nil, errors.New("the Rego worker is starting again after it exited")
		}
		ch := b.starting
		b.mu.Unlock()
		<-ch
		b.mu.Lock()
	}
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, errStopped
	case b.w != nil && !b.w.exited():
		w := b.w
		b.mu.Unlock()
		return w, nil
	}
	done := make(chan struct{})
	b.starting = done
	pause := restartEvery - time.Since(b.started)
	if b.started.IsZero() {
		pause = 0
	}
	programs := make(map[uint64]*source, len(b.programs))
	for id, src := range b.programs {
		programs[id] = src
	}
	log := b.loggerLocked()
	b.mu.Unlock()
	if !wait {
		// A check does not wait for a start (the pause, the process, every
		// program compiled): it would be held past its budget.
		go func() {
			if _, err := b.startLive(done, pause, programs, log); err != nil {
				log.Error("the Rego worker cannot be started again; Rego checks deny", "error", err)
			}
		}()
		return nil, errors.New("the Rego worker is starting again after it exited")
	}
	return b.startLive(done, pause, programs, log)
}

// startLive starts a worker for live and makes it the live one.
func (b *Backend) startLive(done chan struct{}, pause time.Duration, programs map[uint64]*source, log *slog.Logger) (*worker, error) {
	w, err := b.start(pause, programs, log)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.starting = nil
	close(done)
	if err != nil {
		return nil, err
	}
	if b.closed {
		w.kill()
		return nil, errStopped
	}
	for id := range w.compiled {
		if b.programs[id] == nil { // dropped while the worker started
			delete(w.compiled, id)
			go w.send(&request{Op: opDrop, Program: id})
		}
	}
	b.w = w
	if len(programs) > 0 {
		log.Warn("Rego worker started again", "pid", w.cmd.Process.Pid, "programs", len(w.compiled))
	}
	return w, nil
}

// start starts a worker, after pause, and compiles programs into it.
func (b *Backend) start(pause time.Duration, programs map[uint64]*source, log *slog.Logger) (*worker, error) {
	time.Sleep(pause)
	path := b.path
	if path == "" {
		path = Path()
	}
	b.mu.Lock()
	b.started = time.Now()
	b.mu.Unlock()
	w, err := start(path, log, b.exited)
	if err != nil {
		return nil, fmt.Errorf("the policy has Rego modules, which this build of mcpguard evaluates in a separate process, %s, and it cannot be started: %v; "+
			"install %s beside this executable (the image has it at /usr/local/bin/%s) or set %s to its path", Command, err, Command, Command, EnvPath)
	}
	for id, src := range programs {
		if err := w.compile(id, src); err != nil {
			// Compiled before, so not the policy's fault: the checks of
			// this program fail until the worker is started again.
			log.Error("the restarted Rego worker did not compile a policy it compiled before; its Rego checks deny", "program", id, "error", err)
			continue
		}
		w.compiled[id] = true // w is not yet shared
	}
	return w, nil
}

// exited is told when w's process has exited: it is logged and, while a
// policy in use has Rego, another is started.
func (b *Backend) exited(w *worker) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	log := b.loggerLocked()
	log.Error("the Rego worker exited; Rego checks in flight were denied, and it is started again", "pid", w.cmd.Process.Pid, "error", w.err)
	if b.w != w {
		return // not yet or no longer the live one
	}
	b.w = nil
	if len(b.programs) > 0 {
		go func() {
			if _, err := b.live(true); err != nil {
				log.Error("the Rego worker cannot be started again; Rego checks deny", "error", err)
			}
		}()
	}
}

// worker returns the live worker with program id compiled in it, or why
// there is none.
func (b *Backend) worker(id uint64) (*worker, error) {
	w, err := b.live(false)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !w.compiled[id] {
		return nil, fmt.Errorf("the Rego worker has not compiled this policy (see the log)")
	}
	return w, nil
}

// program is a compiled policy's handle; when it is garbage, the worker
// drops its program.
type program struct {
	b  *Backend
	id uint64
}

// Eval implements rules.RegoProgram.
func (p *program) Eval(ctx context.Context, query string, in *rules.RegoInput) ([]any, error) {
	w, err := p.b.worker(p.id)
	if err != nil {
		return nil, err
	}
	budget := time.Hour // a ctx without deadline: rules' checks always have one
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return nil, context.DeadlineExceeded
		}
		budget = left + evalSlack
	}
	req := &request{Op: opEval, Program: p.id, Query: query, Budget: int64(budget), Input: &wireInput{
		Method: in.Method, Tool: in.Tool, Name: in.Name, Prefix: in.Prefix,
		Server: in.Server, Session: in.Session, ProtocolVersion: in.ProtocolVersion,
		Identity: in.Identity, Arguments: in.ArgumentsJSON,
	}}
	resp, err := w.call(ctx, req)
	// p's cleanup drops its program in the worker: not before the worker
	// has answered this evaluation of it.
	runtime.KeepAlive(p)
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return resp.Values, nil
}

// worker is one running worker process.
type worker struct {
	cmd *exec.Cmd

	wmu sync.Mutex // serialises requests
	in  io.WriteCloser
	bw  *bufio.Writer

	mu      sync.Mutex
	pending map[uint64]chan *response
	nextID  uint64

	compiled map[uint64]bool // guarded by Backend.mu
	log      *slog.Logger

	done chan struct{} // closed once the process has exited
	err  error         // why, set before done is closed
}

// start starts the worker at path; onExit is called once it has exited.
func start(path string, log *slog.Logger, onExit func(*worker)) (*worker, error) {
	cmd := exec.Command(path)
	cmd.Stderr = os.Stderr // a crash's trace goes where the sidecar's logs go
	setProcAttr(cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, in: in, bw: bufio.NewWriter(in), pending: map[uint64]chan *response{},
		compiled: map[uint64]bool{}, log: log, done: make(chan struct{})}
	go w.read(out, onExit)
	return w, nil
}

// read dispatches answers until the worker's output ends, then reaps it
// and fails every request still waiting.
func (w *worker) read(out io.Reader, onExit func(*worker)) {
	br := bufio.NewReaderSize(out, 64<<10)
	var buf []byte
	var readErr error
	for {
		line, err := readLine(br, &buf)
		if err != nil {
			readErr = err
			break
		}
		resp, err := decodeResponse(line)
		if err != nil {
			readErr = err
			break
		}
		w.mu.Lock()
		ch := w.pending[resp.ID]
		delete(w.pending, resp.ID)
		w.mu.Unlock()
		if ch != nil {
			ch <- resp // buffered
		}
	}
	if !errors.Is(readErr, io.EOF) {
		// The worker wrote what is not an answer: it cannot be trusted
		// with another check.
		w.cmd.Process.Kill()
	}
	waitErr := w.cmd.Wait()
	switch {
	case !errors.Is(readErr, io.EOF):
		w.err = fmt.Errorf("it wrote what is not an answer, and was killed: %v", readErr)
	case waitErr != nil:
		w.err = waitErr
	default:
		w.err = errors.New("exit status 0")
	}
	close(w.done)
	onExit(w)
}

func (w *worker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *worker) kill() {
	w.cmd.Process.Kill()
	w.in.Close()
}

// send writes req, which has no answer.
func (w *worker) send(req *request) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	w.nextID++
	req.ID = w.nextID
	w.mu.Unlock()
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return writeLine(w.bw, data)
}

// call sends req and waits for its answer, ctx's end, or the worker's.
// When ctx ends first, the worker has until hungAfter later to answer
// before it is killed (and so started again).
func (w *worker) call(ctx context.Context, req *request) (*response, error) {
	ch := make(chan *response, 1)
	w.mu.Lock()
	w.nextID++
	req.ID = w.nextID
	w.mu.Unlock()
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err // the request, not the worker, is at fault
	}
	w.mu.Lock()
	w.pending[req.ID] = ch
	w.mu.Unlock()
	// A worker that stops reading holds this write, and every write after
	// it, once the pipe is full: it is killed as one that stops answering
	// is, which fails the write.
	var hung *time.Timer
	if d, ok := ctx.Deadline(); ok {
		hung = time.AfterFunc(time.Until(d)+hungAfter, func() {
			w.log.Error("the Rego worker did not read a check in time and is killed; it is started again", "pid", w.cmd.Process.Pid, "after", hungAfter)
			w.kill()
		})
	}
	w.wmu.Lock()
	err = writeLine(w.bw, data)
	w.wmu.Unlock()
	if hung != nil {
		hung.Stop()
	}
	if err != nil {
		w.forget(req.ID)
		select {
		case <-w.done:
			return nil, fmt.Errorf("the Rego worker (pid %d) exited (%v); it is started again", w.cmd.Process.Pid, w.err)
		default:
			w.kill()
			return nil, fmt.Errorf("the Rego worker (pid %d) could not be sent the check: %v; it is started again", w.cmd.Process.Pid, err)
		}
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-w.done:
		return nil, fmt.Errorf("the Rego worker (pid %d) exited during the check (%v); it is started again", w.cmd.Process.Pid, w.err)
	case <-ctx.Done():
		go w.watch(req.ID, ch)
		return nil, ctx.Err()
	}
}

// watch waits for the answer of a request the caller no longer waits for;
// a worker that gives none within hungAfter is killed.
func (w *worker) watch(id uint64, ch chan *response) {
	t := time.NewTimer(hungAfter)
	defer t.Stop()
	select {
	case <-ch:
	case <-w.done:
	case <-t.C:
		w.forget(id)
		w.log.Error("the Rego worker did not answer a check in time and is killed; it is started again", "pid", w.cmd.Process.Pid, "after", hungAfter)
		w.kill()
	}
}

func (w *worker) forget(id uint64) {
	w.mu.Lock()
	delete(w.pending, id)
	w.mu.Unlock()
}

// compile compiles program id into the worker.
func (w *worker) compile(id uint64, src *source) error {
	ctx, cancel := context.WithTimeout(context.Background(), compileLimit)
	defer cancel()
	resp, err := w.call(ctx, &request{Op: opCompile, Program: id, Modules: src.modules, Queries: src.queries})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			w.kill()
			return fmt.Errorf("the Rego worker did not compile the policy within %v", compileLimit)
		}
		return err
	}
	if len(resp.Errors) > 0 {
		return resp.Errors
	}
	if resp.Error != "" {
		return errors.New(resp.Error)
	}
	return nil
}
