//go:build !linux

package regoworker

import "os/exec"

// setProcAttr does nothing here: the worker ends when its standard input
// does, which every exit of the sidecar closes.
func setProcAttr(*exec.Cmd) {}
