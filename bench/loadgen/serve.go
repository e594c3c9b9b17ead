package loadgen

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// ServeRole is the body of a benchmark's child process (bench/load,
// bench/peers): it serves role ("upstream", or "reverseproxy" in front of
// target) on listen, prints its address and serves until killed.
func ServeRole(role, listen, target string) error {
	var h http.Handler
	switch role {
	case "upstream":
		h = Upstream()
	case "reverseproxy":
		rp, err := ReverseProxy(target)
		if err != nil {
			return err
		}
		h = rp
	default:
		return fmt.Errorf("unknown -role %q", role)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}
