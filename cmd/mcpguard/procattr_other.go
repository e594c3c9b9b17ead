//go:build !unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr: outside Unix there are no process groups to create; the
// server is stopped by closing its stdin and, failing that, killing it.
func setProcAttr(*exec.Cmd) {}

// signalGroup delivers what the platform can: a kill for SIGKILL and
// SIGTERM, an interrupt otherwise.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		return p.Kill()
	}
	return p.Signal(os.Interrupt)
}

func exitStatus(ps *os.ProcessState) int { return ps.ExitCode() }
