package regoworker

import (
	"os/exec"
	"syscall"
)

// setProcAttr has the kernel SIGKILL the worker should the sidecar die
// without stopping it (even by SIGKILL). The worker also ends when its
// standard input does, which every exit of the sidecar closes.
// (Pdeathsig follows the thread that started the worker; the Go runtime
// ends a thread only under a goroutine that locked it and ended locked,
// which the sidecar never does.)
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
