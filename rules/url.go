package rules

import (
	"cmp"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// URL is a URL as the canonicaliser reads it: one scheme, one host, one port
// and one path that every parser the canonicaliser checks would agree on.
// Rules and Rego builtins look at a URL only through this type.
type URL struct {
	// Scheme is lower case, e.g. "https".
	Scheme string
	// Host is lower-case ASCII: a domain name in A-labels without a trailing
	// dot, or an IP address in canonical text (IPv6 without brackets). Empty
	// only for file URLs.
	Host string
	// IP is the host's address when the host is an IP literal; the zero Addr
	// otherwise.
	IP netip.Addr
	// Port is the explicit port, or the scheme's default (0 when it has none).
	Port int
	// ExplicitPort reports whether the URL wrote a port.
	ExplicitPort bool
	// Userinfo reports whether the authority carried "user[:password]@".
	Userinfo bool
	// Path is percent-decoded, free of dot segments, with runs of "/" merged;
	// "/" when the URL has none.
	Path string
	// RawQuery is the query as written, without "?".
	RawQuery string
}

// String returns the canonical form: scheme://host[:port]path[?query],
// never with userinfo or fragment, the port only when it is not the default.
func (u *URL) String() string {
	return string(u.appendTo(make([]byte, 0, u.stringLen())))
}

// appendTo appends the canonical form (String) to b.
func (u *URL) appendTo(b []byte) []byte {
	b = append(append(b, u.Scheme...), "://"...)
	if u.IP.Is6() {
		b = append(append(append(b, '['), u.Host...), ']')
	} else {
		b = append(b, u.Host...)
	}
	if p, _ := defaultPort(u.Scheme); u.ExplicitPort && u.Port != p {
		b = strconv.AppendInt(append(b, ':'), int64(u.Port), 10)
	}
	b = append(b, u.escapedPath()...)
	if u.RawQuery != "" {
		b = append(append(b, '?'), u.RawQuery...)
	}
	return b
}

// stringLen is len(u.String()), without building it: ParseURL holds every
// URL's canonical form to MaxURLLength on each call the policy decides.
func (u *URL) stringLen() int {
	n := len(u.Scheme) + len("://") + len(u.Host) + len(u.escapedPath())
	if u.IP.Is6() {
		n += len("[]")
	}
	if p, _ := defaultPort(u.Scheme); u.ExplicitPort && u.Port != p {
		var port [20]byte
		n += 1 + len(strconv.AppendInt(port[:0], int64(u.Port), 10))
	}
	if u.RawQuery != "" {
		n += 1 + len(u.RawQuery)
	}
	return n
}

// escapedPath is the path percent-encoded as net/url writes it; the path
// itself, not a copy, when nothing in it needs escaping.
func (u *URL) escapedPath() string {
	p := url.URL{Path: u.Path}
	return p.EscapedPath()
}

// URLError says why a URL cannot be trusted. When the host reads as an IP
// address under some parser (0xa9.0xfe.0xa9.0xfe, １２７．０．０．１), IP holds that
// address so a rule can name its class.
type URLError struct {
	URL    string
	Reason string
	// Host is the host as written, when the host is what was refused.
	Host string
	IP   netip.Addr
}

func (e *URLError) Error() string { return fmt.Sprintf("url %q %s", e.URL, e.Reason) }

// MaxURLLength bounds the URLs the canonicaliser reads.
const MaxURLLength = 4096

// defaultPort returns the default port of a WHATWG special scheme
// (lowercase), and whether it is one: a switch, where a map lookup hashed
// the scheme two or three times per URL.
func defaultPort(scheme string) (port int, special bool) {
	switch scheme {
	case "http", "ws":
		return 80, true
	case "https", "wss":
		return 443, true
	case "ftp":
		return 21, true
	}
	return 0, false
}

// ParseURL canonicalises raw, or says why it cannot be trusted. It never
// resolves names: the fetch happens at the tool server, on the server's
// resolver, at a later moment, so a resolution here would decide about an
// address the server may never use (DNS rebinding) — see docs/policy.md.
//
// It denies rather than guesses wherever WHATWG URL parsing (browsers, Node,
// undici), Go's net/url with net.ParseIP, and inet_aton-style resolvers
// (libc, Python, curl) would read a different host: backslashes, whitespace
// and control characters, several "@", a scheme not followed by exactly
// "//", percent-encoded hosts, hosts that need Unicode mapping (fullwidth
// letters, "。" and other dots), IDNA deviation characters, invalid punycode,
// zone identifiers, IPv4 in any form but dotted decimal, out-of-range or
// zero-padded ports, dot segments, encoded slashes and double encoding in
// the path.
func ParseURL(raw string) (*URL, error) { return parseURL(raw, new(URL)) }

// parseURL is ParseURL into u, which it returns unless raw is refused.
func parseURL(raw string, u *URL) (*URL, error) {
	fail := func(format string, args ...any) (*URL, error) {
		return nil, &URLError{URL: truncate(raw), Reason: fmt.Sprintf(format, args...)}
	}
	if len(raw) > MaxURLLength {
		return fail("is longer than %d bytes", MaxURLLength)
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c <= ' ' || c == 0x7f:
			return fail("contains whitespace or a control character (byte %d)", i)
		case c == '\\':
			return fail("contains a backslash, which WHATWG parsers read as \"/\" and others do not")
		case c == '%' && (i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2])):
			return fail("has a malformed percent escape")
		}
	}
	colon := strings.IndexByte(raw, ':')
	if colon <= 0 || !validScheme(raw[:colon]) {
		return fail("has no valid scheme")
	}
	*u = URL{Scheme: strings.ToLower(raw[:colon])}
	rest := raw[colon+1:]
	if !strings.HasPrefix(rest, "//") {
		return fail("does not continue %q with \"//\"", u.Scheme+":")
	}
	rest = rest[2:]
	if strings.HasPrefix(rest, "/") && u.Scheme != "file" {
		return fail("has more than two slashes after %q, which WHATWG parsers skip and others read as an empty host", u.Scheme+":")
	}
	end := len(rest) // of the authority: a loop, where IndexAny builds a set per call
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
	}
	authority, rest := rest[:end], rest[end:]
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		if strings.IndexByte(authority, '@') != at {
			return fail("has more than one \"@\" in its authority; parsers disagree on which ends the userinfo")
		}
		if !validUserinfo(authority[:at]) {
			return fail("has characters in its userinfo that parsers treat differently")
		}
		u.Userinfo = true
		authority = authority[at+1:]
	}
	hostport := authority
	var port string
	hasPort := false
	if strings.HasPrefix(hostport, "[") {
		closing := strings.IndexByte(hostport, ']')
		if closing < 0 {
			return fail("has an unterminated IPv6 literal")
		}
		switch after := hostport[closing+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return fail("has %q after its IPv6 literal", after)
		}
		hostport = hostport[:closing+1]
	} else if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		port, hasPort = hostport[i+1:], true
		hostport = hostport[:i]
	}
	if hasPort {
		n, err := parsePort(port)
		if err != "" {
			return fail("has %s", err)
		}
		u.Port, u.ExplicitPort = n, true
	} else {
		u.Port, _ = defaultPort(u.Scheme)
	}
	if u.Scheme == "file" {
		if hostport != "" && !strings.EqualFold(hostport, "localhost") || u.Userinfo || hasPort {
			return fail("names a host in a file URL; only file:///path is accepted")
		}
	} else {
		if _, special := defaultPort(u.Scheme); !special && !isASCII(hostport) {
			// WHATWG parses the host of a non-special URL as an opaque,
			// percent-encoded string: no IDNA, no mapping.
			return fail("has a non-ASCII host in a %q URL, which WHATWG parsers keep opaque", u.Scheme)
		}
		host, ip, herr := canonicalHost(hostport)
		if herr != nil {
			herr.URL = truncate(raw)
			return nil, herr
		}
		u.Host, u.IP = host, ip
	}
	if u.Scheme == "file" {
		// A server that takes the URL for a path ("file://" cut off) reads
		// "/workspace/x?/../../etc/passwd" as /etc/passwd; one that decodes
		// to UNC reads "file:////host/share" as a network share.
		if i := strings.IndexAny(rest, "?#"); i >= 0 {
			return fail("has a %s in a file URL, which a server that reads the URL as a path takes as part of the path", map[byte]string{'?': "query", '#': "fragment"}[rest[i]])
		}
		if strings.HasPrefix(rest, "//") {
			return fail("has a file URL path starting with \"//\", which Windows reads as a network share")
		}
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, u.RawQuery = rest[:i], rest[i+1:]
	}
	p, perr := canonicalURLPath(rest)
	if perr != "" {
		return fail("%s", perr)
	}
	u.Path = p
	// Percent-encoding can triple the path: a URL within the bound whose
	// canonical form is not would be refused when read again, so the
	// canonical form is held to the same bound (found by FuzzCanonicalURL).
	// It is at most three times raw plus a host (≤ 253 bytes, or an IPv6
	// literal in brackets) and a port: a URL within a third of the bound,
	// less room for those, needs no measuring.
	if len(raw) > (MaxURLLength-300)/3 && u.stringLen() > MaxURLLength {
		return fail("is longer than %d bytes once canonical", MaxURLLength)
	}
	return u, nil
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		switch {
		case 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= s[i] && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.'):
		default:
			return false
		}
	}
	return true
}

// validUserinfo reports whether s is RFC 3986 userinfo: unreserved,
// sub-delims, ":" and percent escapes.
func validUserinfo(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c|0x20 && c|0x20 <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:", c) >= 0:
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
		default:
			return false
		}
	}
	return true
}

func parsePort(s string) (int, string) {
	if s == "" {
		return 0, "an empty port"
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Sprintf("a zero-padded port %q", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' || n > 65535 {
			return 0, fmt.Sprintf("an invalid port %q", truncate(s))
		}
		n = n*10 + int(s[i]-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Sprintf("port %s, outside 1-65535", s)
	}
	return n, ""
}

// canonicalHost reads the host of an authority. See ParseURL for what it
// refuses.
func canonicalHost(h string) (string, netip.Addr, *URLError) {
	fail := func(ip netip.Addr, format string, args ...any) (string, netip.Addr, *URLError) {
		return "", netip.Addr{}, &URLError{Reason: fmt.Sprintf(format, args...), Host: h, IP: ip}
	}
	if h == "" {
		return fail(netip.Addr{}, "has no host")
	}
	if h[0] == '[' {
		lit := h[1 : len(h)-1]
		if strings.IndexByte(lit, '%') >= 0 {
			return fail(netip.Addr{}, "has an IPv6 zone identifier in %q; WHATWG parsers reject it and Go accepts it", h)
		}
		a, err := netip.ParseAddr(lit)
		if err != nil || !a.Is6() {
			return fail(netip.Addr{}, "has an invalid IPv6 literal %q", h)
		}
		return a.String(), a, nil
	}
	if strings.IndexByte(h, '%') >= 0 {
		ip, _ := whatwgIPv4(mapHostForDisplay(h))
		return fail(ip, "has a percent-encoded host %q; write the host as it is", h)
	}
	ascii := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 0x80:
			ascii = false
		case 'a' <= c|0x20 && c|0x20 <= 'z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
		default:
			return fail(netip.Addr{}, "has %q in its host, which parsers treat differently", string(c))
		}
	}
	host := asciiLower(h)
	if !ascii {
		if strings.ContainsAny(host, "ßς\u200c\u200d") {
			return fail(netip.Addr{}, "has a host %q with an IDNA deviation character, which IDNA 2003 and 2008 map differently", h)
		}
		mapped, err := idna.Lookup.ToASCII(host)
		if err != nil {
			ip, _ := whatwgIPv4(mapHostForDisplay(h))
			return fail(ip, "has a host %q that is not a valid internationalised name", h)
		}
		reg, err := idna.Registration.ToASCII(host)
		if err != nil || reg != mapped {
			ip, _ := whatwgIPv4(mapped)
			return fail(ip, "has a host %q that only reads as %q after Unicode mapping; write %q", h, mapped, mapped)
		}
		host = mapped
	} else if strings.Contains(host, "xn--") {
		u, err := idna.Lookup.ToUnicode(host)
		back, err2 := idna.Lookup.ToASCII(u)
		if err != nil || err2 != nil || back != host {
			return fail(netip.Addr{}, "has a host %q with invalid punycode", h)
		}
	}
	trailingDot := strings.HasSuffix(host, ".")
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 {
		return fail(netip.Addr{}, "has an empty or over-long host %q", h)
	}
	if endsInNumber(name) {
		ip, ok := whatwgIPv4(name)
		if !ok {
			return fail(netip.Addr{}, "has a host %q that reads as a number but is no IPv4 address", h)
		}
		if trailingDot || name != ip.String() {
			return fail(ip, "has a host %q that is a non-canonical form of %s, which only some parsers read as an address; write %s", h, ip, ip)
		}
		return name, ip, nil
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fail(netip.Addr{}, "has an empty or over-long label in its host %q", h)
		}
	}
	return name, netip.Addr{}, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// mapHostForDisplay applies what a WHATWG parser applies before it looks for
// an IPv4 address (percent-decoding, then UTS #46 mapping), so a refused host
// can still be classified; "" when that fails.
func mapHostForDisplay(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		if h[i] == '%' && i+2 < len(h) {
			if v, err := strconv.ParseUint(h[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(h[i])
	}
	m, err := idna.Lookup.ToASCII(b.String())
	if err != nil {
		return ""
	}
	return m
}

// endsInNumber is WHATWG's "ends in a number checker": whether the host is
// to be read as IPv4 (https://url.spec.whatwg.org/#ends-in-a-number-checker).
func endsInNumber(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if allDigits(last, 10) {
		return true
	}
	return len(last) >= 2 && last[0] == '0' && last[1]|0x20 == 'x' && allDigits(last[2:], 16)
}

func allDigits(s string, base int) bool {
	for i := 0; i < len(s); i++ {
		if digitValue(s[i]) >= base {
			return false
		}
	}
	return true
}

func digitValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c|0x20 && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return 99
}

// whatwgIPv4 is WHATWG's IPv4 parser, which is also inet_aton's: one to four
// parts, each decimal, octal (leading 0) or hex (0x); the last part fills
// the remaining bytes (https://url.spec.whatwg.org/#concept-ipv4-parser).
func whatwgIPv4(host string) (netip.Addr, bool) {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, ok := ipv4Number(p)
		if !ok {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func ipv4Number(p string) (uint64, bool) {
	if p == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(p) >= 2 && p[0] == '0' && p[1]|0x20 == 'x':
		p, base = p[2:], 16
		if p == "" {
			return 0, true
		}
	case len(p) >= 2 && p[0] == '0':
		p, base = p[1:], 8
	}
	if !allDigits(p, base) || len(p) > 32 {
		return 0, false
	}
	n, err := strconv.ParseUint(p, base, 64)
	if err != nil || n > 1<<32 {
		return 0, false
	}
	return n, true
}

// canonicalURLPath decodes and checks a URL path; the reason is "" when it is
// accepted.
func canonicalURLPath(p string) (string, string) {
	if p == "" {
		return "/", ""
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])) {
			return "", "has a malformed percent escape in its path"
		}
	}
	decoded, reason := percentDecode(p, func(esc string, c byte) string {
		switch {
		case c == '/' || c == '\\':
			return fmt.Sprintf("has an encoded slash %q in its path, which servers decode differently", esc)
		case c < ' ' || c == 0x7f:
			return fmt.Sprintf("has an encoded control character %q in its path", esc)
		}
		return ""
	})
	if reason != "" {
		return "", reason
	}
	if r := cmp.Or(decodedReadingProblem(decoded), lookalikeSeparator(decoded)); r != "" {
		return "", "has in its path " + r
	}
	p = decoded
	// Every segment but the first (before the path's leading "/") is
	// checked; empty ones are dropped. A path with none to drop but a
	// trailing one is its own canonical form, returned without a copy.
	same := p[0] == '/'
	for rest, more := p, true; more; {
		var s string
		if _, rest, more = strings.Cut(rest, "/"); !more {
			break
		}
		s, _, _ = strings.Cut(rest, "/")
		// "..;x" is ".." to servlet containers, which drop ";params"
		// before resolving (Orange Tsai, "Breaking Parser Logic", 2018).
		bare, _, _ := strings.Cut(s, ";")
		switch bare {
		case ".", "..":
			return "", fmt.Sprintf("has a dot segment %q in its path, which clients and servers resolve differently", s)
		case "":
			if s == "" {
				same = same && rest == "" // only a trailing one
				continue
			}
		}
		if r := dotLookalike(bare); r != "" {
			return "", "has in its path " + r
		}
	}
	if same {
		return p, ""
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for _, s := range segs[1:] {
		if s != "" {
			out = append(out, s)
		}
	}
	clean := "/" + strings.Join(out, "/")
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean, ""
}

func isHex(c byte) bool { return digitValue(c) < 16 }

func unhex(c byte) byte { return byte(digitValue(c)) }

func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
