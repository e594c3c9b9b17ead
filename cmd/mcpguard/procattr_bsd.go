//go:build unix && !linux

package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the wrapped server in a process group of its own, so
// signals reach everything it started. There is no parent-death signal
// outside Linux: if mcpguard is SIGKILLed the server sees its stdin close,
// which is MCP's request to exit.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
