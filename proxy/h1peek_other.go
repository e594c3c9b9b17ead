//go:build !linux

package proxy

// h1Fast: elsewhere http.Transport speaks to every gateway.
const h1Fast = false

func (c *h1Conn) idleClean() bool { return false }

// connPeek is the peek idleClean keeps on Linux.
type connPeek struct{}
