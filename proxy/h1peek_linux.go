package proxy

import "syscall"

// h1Fast: the HTTP/1.1 client (h1client.go) is used for http:// gateways.
const h1Fast = true

// idleClean reports whether an idle connection can carry the next request:
// nothing is buffered, and the socket holds neither bytes the gateway sent
// unasked nor its end (the gateway closed it). One non-blocking peek, no
// goroutine, no timer.
func (c *h1Conn) idleClean() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	clean := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		clean = err == syscall.EAGAIN
		return true
	})
	return err == nil && clean
}
