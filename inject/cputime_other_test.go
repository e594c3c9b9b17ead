//go:build !linux

package inject

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
