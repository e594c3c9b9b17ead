//go:build !linux

package proxy_test

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
