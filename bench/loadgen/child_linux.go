package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Child is a process a benchmark started and must stop: it dies with the
// benchmark even if that is killed (SIGKILL on parent death), and stops
// with SIGTERM, then SIGKILL.
type Child struct {
	Cmd  *exec.Cmd
	done chan struct{}
}

// StartChild starts cmd (made with exec.CommandContext: cancelling the
// context sends SIGTERM) as a Child.
func StartChild(cmd *exec.Cmd) (*Child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Child{Cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

// Stop ends the child with SIGTERM, then SIGKILL after grace.
func (c *Child) Stop(grace time.Duration) {
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.Cmd.Process.Kill()
		<-c.done
	}
}

// Exited reports whether the child has exited.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// StartRole starts this program again as a Child with args (a benchmark's
// "-role upstream" or "-role reverseproxy -target URL", served by
// ServeRole) and returns it with the address it printed.
func StartRole(ctx context.Context, args ...string) (*Child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	c, err := StartChild(cmd)
	if err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		c.Stop(time.Second)
		return nil, "", fmt.Errorf("%v: no address: %v", args, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return c, strings.TrimSpace(line), nil
}
