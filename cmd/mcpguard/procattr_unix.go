//go:build unix

package main

import (
	"errors"
	"os"
	"syscall"
)

// signalGroup sends sig to the process group p leads (setProcAttr made it
// a leader), falling back to p alone.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	err := syscall.Kill(-p.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil // the group is empty: everything has exited
	}
	if err != nil {
		return p.Signal(sig)
	}
	return nil
}

// exitStatus is the status to exit with for a process that ended: its exit
// code, or 128+N when signal N ended it (the shells' convention).
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
