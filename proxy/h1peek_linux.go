package proxy

import "syscall"

// h1Fast: the HTTP/1.1 client (h1client.go) is used for http:// gateways.
const h1Fast = true

// idleClean reports whether an idle connection can carry the next request:
// nothing is buffered, and the socket holds neither bytes the gateway sent
// unasked nor its end (the gateway closed it). One non-blocking peek, no
// goroutine, no timer, and no allocation: the connection's raw form and
// the peek are made at its first reuse and kept (h1Conn.peek).
func (c *h1Conn) idleClean() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	p := &c.peek
	if p.rc == nil {
		sc, ok := c.conn.(syscall.Conn)
		if !ok {
			return false
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		p.rc = rc
		p.fn = func(fd uintptr) bool {
			_, _, err := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			p.clean = err == syscall.EAGAIN
			return true
		}
	}
	p.clean = false
	err := p.rc.Read(p.fn)
	return err == nil && p.clean
}

// connPeek is what idleClean keeps of a connection between its reuses; a
// connection is used by one call at a time, and so is its peek.
type connPeek struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	b     [1]byte
	clean bool
}
