package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the wrapped server in a process group of its own, so
// signals reach everything it started, and has the kernel SIGKILL it should
// mcpguard die without stopping it (even by SIGKILL): no orphan keeps
// running a tool server nobody guards.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
