//go:build !linux

package proxy

import "time"

func ThreadCPU() (time.Duration, bool) { return 0, false }
