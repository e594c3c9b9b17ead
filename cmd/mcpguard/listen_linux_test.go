package main

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The proxy's and wrap's listeners are plain TCP: Go's default listener
// probes for Multipath TCP at start and listens with MPTCP sockets where the
// kernel has it, which costs the sidecar's start-up four sockets (#18).
func TestListenTCPIsPlainTCP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := listenTCP(addr)
			if err != nil {
				t.Skipf("cannot listen on %s here: %v", addr, err)
			}
			defer ln.Close()
			raw, err := ln.(*net.TCPListener).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var proto int
			var serr error
			if err := raw.Control(func(fd uintptr) {
				proto, serr = unix.GetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_PROTOCOL)
			}); err != nil {
				t.Fatal(err)
			}
			if serr != nil {
				t.Fatal(serr)
			}
			if proto != syscall.IPPROTO_TCP {
				t.Errorf("listener on %s has protocol %d, want plain TCP (%d)", addr, proto, syscall.IPPROTO_TCP)
			}
		})
	}
}
