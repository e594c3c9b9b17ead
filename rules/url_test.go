package rules

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// Cases collected from public SSRF and parser-differential write-ups: Orange
// Tsai, "A New Era of SSRF" (Black Hat 2017); PayloadsAllTheThings "Server
// Side Request Forgery"; the WHATWG URL test suite (urltestdata.json);
// Claroty/Snyk "Exploiting URL parsing confusion" (2022).
func TestParseURLAccepts(t *testing.T) {
	tests := []struct {
		in                       string
		scheme, host, path, want string
		port                     int
	}{
		{in: "https://api.weather.gov/points/39.7,-104.9", scheme: "https", host: "api.weather.gov", path: "/points/39.7,-104.9", port: 443},
		{in: "HTTPS://API.Weather.GOV", scheme: "https", host: "api.weather.gov", path: "/", port: 443, want: "https://api.weather.gov/"},
		{in: "https://api.weather.gov./x", host: "api.weather.gov", path: "/x", port: 443},
		{in: "https://example.com:443/", host: "example.com", path: "/", port: 443, want: "https://example.com/"},
		{in: "http://example.com:8080/a?b=c#frag", host: "example.com", path: "/a", port: 8080, want: "http://example.com:8080/a?b=c"},
		{in: "https://httpbin.org//anything", host: "httpbin.org", path: "/anything"},
		{in: "https://httpbin.org/%61nything/", host: "httpbin.org", path: "/anything/"},
		{in: "http://127.0.0.1/", host: "127.0.0.1", path: "/"},
		{in: "http://[::1]:8080/", host: "::1", port: 8080},
		{in: "http://[0:0:0:0:0:ffff:a9fe:a9fe]/", host: "::ffff:169.254.169.254"},
		{in: "https://münchen.de/", host: "xn--mnchen-3ya.de"},
		{in: "https://xn--mnchen-3ya.de/", host: "xn--mnchen-3ya.de"},
		{in: "https://1.example.com/", host: "1.example.com"},
		{in: "https://my_host.example.com/", host: "my_host.example.com"},
		{in: "file:///workspace/a.txt", scheme: "file", path: "/workspace/a.txt"},
		// The authority ends at the first "/", "?" or "#" for every parser;
		// what follows an "@" there is the host.
		{in: "http://evil.com#@api.weather.gov/", host: "evil.com", path: "/"},
		{in: "http://evil.com?@api.weather.gov/", host: "evil.com", path: "/"},
		{in: "http://evil.com/@api.weather.gov/", host: "evil.com", path: "/@api.weather.gov/"},
		{in: "http://api.weather.gov%23@evil.com/", host: "evil.com"},
		{in: "http://api.weather.gov:443@evil.com/", host: "evil.com", port: 80},
		{in: "http://1.2.3.4.nip.io/", host: "1.2.3.4.nip.io"},
		{in: "http://0x7f000001.example/", host: "0x7f000001.example"},
		{in: "http://[::]/", host: "::"},
	}
	for _, tt := range tests {
		u, err := ParseURL(tt.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.in, err)
			continue
		}
		if tt.scheme != "" && u.Scheme != tt.scheme {
			t.Errorf("ParseURL(%q).Scheme = %q, want %q", tt.in, u.Scheme, tt.scheme)
		}
		if u.Host != tt.host {
			t.Errorf("ParseURL(%q).Host = %q, want %q", tt.in, u.Host, tt.host)
		}
		if tt.path != "" && u.Path != tt.path {
			t.Errorf("ParseURL(%q).Path = %q, want %q", tt.in, u.Path, tt.path)
		}
		if tt.port != 0 && u.Port != tt.port {
			t.Errorf("ParseURL(%q).Port = %d, want %d", tt.in, u.Port, tt.port)
		}
		if tt.want != "" && u.String() != tt.want {
			t.Errorf("ParseURL(%q).String() = %q, want %q", tt.in, u.String(), tt.want)
		}
	}
}

func TestParseURLRefuses(t *testing.T) {
	tests := []struct {
		in     string
		reason string // a substring of the reason
		ip     string // the address the host reads as, when it is one
	}{
		// IPv4 in decimal, octal, hex, mixed and short forms: inet_aton and
		// WHATWG read an address, net.ParseIP reads a name.
		{"http://2852039166/", "non-canonical form of 169.254.169.254", "169.254.169.254"},
		{"http://0xa9.0xfe.0xa9.0xfe/", "non-canonical", "169.254.169.254"},
		{"http://0xA9FEA9FE/", "non-canonical", "169.254.169.254"},
		{"http://0251.0376.0251.0376/", "non-canonical", "169.254.169.254"},
		{"http://0251.254.169.254/", "non-canonical", "169.254.169.254"},
		{"http://169.254.43518/", "non-canonical", "169.254.169.254"},
		{"http://169.16689662/", "non-canonical", "169.254.169.254"},
		{"http://127.1/", "non-canonical", "127.0.0.1"},
		{"http://0/", "non-canonical", "0.0.0.0"},
		{"http://017700000001/", "non-canonical", "127.0.0.1"},
		{"http://127.0.0.1./", "non-canonical", "127.0.0.1"},
		{"http://127.000.000.001/", "non-canonical", "127.0.0.1"},
		{"http://0x7f.1/", "non-canonical", "127.0.0.1"},
		{"http://1.2.3.4.5/", "no IPv4 address", ""},
		{"http://256.0.0.1/", "no IPv4 address", ""},
		{"http://09.0.0.1/", "no IPv4 address", ""},
		{"http://4294967296/", "no IPv4 address", ""},
		{"http://0XA9FEA9FE/", "non-canonical", "169.254.169.254"},
		{"http://0x/", "non-canonical", "0.0.0.0"},
		{"http://ⓔⓧⓐⓜⓟⓛⓔ.com/", "Unicode mapping", ""},
		{"http://example.com。/", "Unicode mapping", ""},
		{"http://127.0.0.1:80:80/", "in its host", ""},
		{"http://evil.com:80\\@api.weather.gov/", "backslash", ""},
		// Unicode dots, fullwidth forms, percent-encoding in the host.
		{"http://169。254。169。254/", "Unicode mapping", "169.254.169.254"},
		{"http://169．254．169．254/", "Unicode mapping", "169.254.169.254"},
		{"http://169｡254｡169｡254/", "Unicode mapping", "169.254.169.254"},
		{"http://１２７．０．０．１/", "Unicode mapping", "127.0.0.1"},
		{"https://api.weather。gov/", "Unicode mapping", ""},
		{"https://ａｐｉ.github.com/", "Unicode mapping", ""},
		{"https://API.WEATHER.GOV\u200b/", "", ""},
		{"http://%31%32%37.0.0.1/", "percent-encoded host", "127.0.0.1"},
		{"http://api.weather.gov%2eevil.com/", "percent-encoded host", ""},
		{"https://faß.de/", "deviation", ""},
		{"https://xn--zz.com/", "punycode", ""},
		// Userinfo tricks and authority confusion.
		{"https://api.weather.gov@evil.com@api.weather.gov/", "more than one \"@\"", ""},
		{"https://api.weather.gov\\@evil.com/", "backslash", ""},
		{"http://evil.com\\.api.weather.gov/", "backslash", ""},
		{"https:/\\evil.com", "backslash", ""},
		{"https:evil.com", "\"//\"", ""},
		{"https:/evil.com", "\"//\"", ""},
		{"https:///evil.com", "more than two slashes", ""},
		{"https://evil.com:443:80/", "in its host", ""},
		{"https://[::1]x/", "after its IPv6 literal", ""},
		{"https://[::1/", "unterminated", ""},
		{"https://api.weather.gov:99999/", "outside 1-65535", ""},
		{"https://api.weather.gov:0/", "outside 1-65535", ""},
		{"https://api.weather.gov:0443/", "zero-padded", ""},
		{"https://api.weather.gov:/", "empty port", ""},
		{"https://api.weather.gov:+443/", "invalid port", ""},
		// IPv6 zone identifiers and bad literals.
		{"http://[fe80::1%25eth0]/", "zone identifier", ""},
		{"http://[::ffff:999.1.1.1]/", "invalid IPv6", ""},
		{"http://[1.2.3.4]/", "invalid IPv6", ""},
		// Whitespace and control characters.
		{" https://api.weather.gov/", "whitespace", ""},
		{"https://api.weather.gov/\n", "whitespace", ""},
		{"https://api.wea\tther.gov/", "whitespace", ""},
		{"https://api.weather.gov\x00.evil.com/", "control", ""},
		{"https://api.weather.gov /", "whitespace", ""},
		// Paths.
		{"https://httpbin.org/x/../anything", "dot segment", ""},
		{"https://httpbin.org/x/%2e%2e/anything", "dot segment", ""},
		{"https://httpbin.org/x/.%2E/anything", "dot segment", ""},
		{"https://httpbin.org/x/..;/anything", "dot segment", ""},
		{"https://httpbin.org/x/..;jsessionid=1/anything", "dot segment", ""},
		{"https://httpbin.org/x/%2e%2e%3b/anything", "dot segment", ""},
		{"https://httpbin.org/anything%2fx", "encoded slash", ""},
		{"https://httpbin.org/anything%5cx", "encoded slash", ""},
		{"https://httpbin.org/%252e%252e/x", "double percent-encoding", ""},
		{"https://httpbin.org/%25%32%65%25%32%65/x", "double percent-encoding", ""},
		{"https://httpbin.org/%25%32e%25%32e/x", "double percent-encoding", ""},
		{"https://httpbin.org/%c0%ae%c0%ae/x", "not UTF-8", ""},
		{"https://httpbin.org/%c0%af/x", "not UTF-8", ""},
		{"https://httpbin.org/%ff/x", "not UTF-8", ""},
		{"https://httpbin.org/x/．．/anything", `NFKC reads as ".."`, ""},
		{"https://httpbin.org/x/%EF%BC%8E%EF%BC%8E/anything", `NFKC reads as ".."`, ""},
		{"https://httpbin.org/x/‥;x/anything", `NFKC reads as ".."`, ""},
		{"https://httpbin.org/x／..／anything", `reads as "/"`, ""},
		{"https://httpbin.org/x%EF%BC%8F..%EF%BC%8Fanything", `reads as "/"`, ""},
		{"https://httpbin.org/x＼..＼anything", `reads as "\\"`, ""},
		{"file:///workspace/x?/../../etc/passwd", "query in a file URL", ""},
		{"file:///workspace/x#/../../etc/passwd", "fragment in a file URL", ""},
		{"file:////host/share/x", "network share", ""},
		{"https://httpbin.org/%zz", "malformed percent", ""},
		{"https://httpbin.org/a%00b", "control", ""},
		// Hosts with characters parsers treat differently.
		{"https://evil.com*.api.weather.gov/", "in its host", ""},
		{"https://evil$.com/", "in its host", ""},
		{"https://a..b/", "empty or over-long label", ""},
		{"https:///", "more than two slashes", ""},
		{"https://", "no host", ""},
		{"https://user@/", "no host", ""},
		{"file://evil.com/etc/passwd", "names a host", ""},
		{"weather://münchen/", "keep opaque", ""},
		{"javascript:alert(1)", "\"//\"", ""},
		{"//api.weather.gov/", "no valid scheme", ""},
		{"1http://a/", "no valid scheme", ""},
		{"https://" + strings.Repeat("a", MaxURLLength), "longer than", ""},
	}
	for _, tt := range tests {
		u, err := ParseURL(tt.in)
		if err == nil {
			t.Errorf("ParseURL(%q) = %q, want an error", tt.in, u.String())
			continue
		}
		var ue *URLError
		if !errors.As(err, &ue) {
			t.Errorf("ParseURL(%q) error %T, want *URLError", tt.in, err)
			continue
		}
		if !strings.Contains(ue.Reason, tt.reason) {
			t.Errorf("ParseURL(%q) reason %q, want it to contain %q", tt.in, ue.Reason, tt.reason)
		}
		var want netip.Addr
		if tt.ip != "" {
			want = netip.MustParseAddr(tt.ip)
		}
		if ue.IP != want {
			t.Errorf("ParseURL(%q) IP = %v, want %v", tt.in, ue.IP, want)
		}
	}
}

func TestParseURLUserinfo(t *testing.T) {
	u, err := ParseURL("https://api.weather.gov@evil.com/")
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "evil.com" || !u.Userinfo {
		t.Errorf("host %q userinfo %v, want evil.com with userinfo", u.Host, u.Userinfo)
	}
	if strings.Contains(u.String(), "@") {
		t.Errorf("String() = %q keeps userinfo", u.String())
	}
}

// otherReadings returns the host Go's net/url and an IDNA-aware client read
// from raw, for the property that an accepted URL has one host.
func otherReadings(t *testing.T, raw string, u *URL) {
	t.Helper()
	g, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("ParseURL accepts %q, net/url refuses it: %v", raw, err)
	}
	if !strings.EqualFold(g.Scheme, u.Scheme) {
		t.Fatalf("%q: net/url scheme %q, canonical %q", raw, g.Scheme, u.Scheme)
	}
	if u.Scheme == "file" {
		return
	}
	gh := strings.TrimSuffix(strings.ToLower(g.Hostname()), ".")
	if a, err := netip.ParseAddr(gh); err == nil {
		if a.WithZone("") != u.IP {
			t.Fatalf("%q: net/url + netip read %v, canonical %v (host %q)", raw, a, u.IP, u.Host)
		}
		return
	}
	if u.IP.IsValid() {
		t.Fatalf("%q: canonical reads address %v, net/url reads name %q", raw, u.IP, gh)
	}
	if ip, ok := whatwgIPv4(gh); ok {
		t.Fatalf("%q: inet_aton reads %v from %q, canonical reads name %q", raw, ip, gh, u.Host)
	}
	ascii, err := idna.Lookup.ToASCII(gh)
	if err != nil {
		// Go's HTTP client would refuse to connect; one host or none.
		return
	}
	if ascii != u.Host {
		t.Fatalf("%q: IDNA reading %q, canonical %q", raw, ascii, u.Host)
	}
	if g.Port() != "" && g.Port() != strconv.Itoa(u.Port) {
		t.Fatalf("%q: net/url port %q, canonical %d", raw, g.Port(), u.Port)
	}
}

func TestParseURLOneHost(t *testing.T) {
	for _, raw := range []string{
		"https://api.weather.gov/points", "https://münchen.de/", "http://[::ffff:a9fe:a9fe]:8080/",
		"https://api.weather.gov.:443/", "https://u:p@example.com/", "file:///workspace/x",
	} {
		u, err := ParseURL(raw)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", raw, err)
		}
		otherReadings(t, raw, u)
	}
}

func FuzzCanonicalURL(f *testing.F) {
	for _, s := range []string{
		"https://api.weather.gov/", "http://2852039166/", "http://0xa9.0xfe.0xa9.0xfe/",
		"http://169.254.43518/", "http://[::ffff:169.254.169.254]/", "https://api.weather.gov@evil.com/",
		"http://169。254。169。254/", "https://xn--mnchen-3ya.de/", "http://[fe80::1%25eth0]/",
		"https://httpbin.org/x/%2e%2e/anything", "https://a.b:8443/p?q#f", "file:///etc/passwd",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if i := strings.Index(raw, "//"); i >= 0 {
			if j := strings.IndexAny(raw[i+2:], "/?#"); j >= 0 {
				path := raw[i+2+j:]
				gotPath, gotReason := canonicalURLPath(path)
				wantPath, wantReason := refCanonicalURLPath(path)
				if gotPath != wantPath || gotReason != wantReason {
					t.Fatalf("canonicalURLPath(%q) = %q, %q; before it was %q, %q", path, gotPath, gotReason, wantPath, wantReason)
				}
			}
		}
		u, err := ParseURL(raw)
		if err != nil {
			return
		}
		if s, want := u.String(), refURLString(u); s != want || u.stringLen() != len(want) {
			t.Fatalf("String of %q = %q (stringLen %d); before it was %q", raw, s, u.stringLen(), want)
		}
		otherReadings(t, raw, u)
		again, err := ParseURL(u.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q is refused: %v", u.String(), raw, err)
		}
		if again.Host != u.Host || again.Port != u.Port || again.Path != u.Path || again.IP != u.IP {
			t.Fatalf("canonical form %q of %q reads differently: %+v vs %+v", u.String(), raw, again, u)
		}
	})
}

func TestClassifyIP(t *testing.T) {
	tests := []struct {
		ip   string
		want IPClass
		text string
	}{
		{"169.254.169.254", ClassCloudMetadata | ClassLinkLocal, "cloud metadata (link-local)"},
		{"::ffff:169.254.169.254", ClassCloudMetadata | ClassLinkLocal, ""},
		{"::a9fe:a9fe", ClassCloudMetadata | ClassLinkLocal, ""},        // IPv4-compatible
		{"64:ff9b::a9fe:a9fe", ClassCloudMetadata | ClassLinkLocal, ""}, // NAT64
		{"64:ff9b::127.0.0.1", ClassLoopback, ""},                       // NAT64, dotted
		{"2002:a9fe:a9fe::1", ClassCloudMetadata | ClassLinkLocal, ""},  // 6to4
		{"::ffff:0:a9fe:a9fe", ClassCloudMetadata | ClassLinkLocal, ""}, // SIIT
		{"fd00:ec2::254", ClassCloudMetadata | ClassPrivate, ""},        // AWS IMDS over IPv6
		{"100.100.100.200", ClassCloudMetadata | ClassCGNAT, ""},        // Alibaba
		{"169.254.170.2", ClassCloudMetadata | ClassLinkLocal, ""},      // ECS
		{"127.0.0.1", ClassLoopback, "loopback"},
		{"127.255.255.254", ClassLoopback, ""},
		{"::1", ClassLoopback, ""},
		{"::ffff:127.0.0.1", ClassLoopback, ""},
		{"::", ClassUnspecified, ""},
		{"0.0.0.0", ClassUnspecified, ""},
		{"10.1.2.3", ClassPrivate, "private"},
		{"172.31.255.255", ClassPrivate, ""},
		{"172.32.0.1", 0, "public"},
		{"192.168.1.1", ClassPrivate, ""},
		{"fc00::1", ClassPrivate, ""},
		{"fe80::1", ClassLinkLocal, ""},
		{"fe80::1%eth0", ClassLinkLocal, ""},
		{"100.64.0.1", ClassCGNAT, "carrier-grade NAT"},
		{"224.0.0.1", ClassMulticast, ""},
		{"ff02::1", ClassMulticast, ""},
		{"255.255.255.255", ClassBroadcast | ClassReserved, ""},
		{"192.0.2.1", ClassDocumentation, ""},
		{"2001:db8::1", ClassDocumentation, ""},
		{"198.18.0.1", ClassBenchmarking, ""},
		{"240.0.0.1", ClassReserved, ""},
		{"8.8.8.8", 0, ""},
		{"2606:4700:4700::1111", 0, ""},
		{"::ffff:8.8.8.8", 0, ""},
	}
	for _, tt := range tests {
		got := ClassifyIP(netip.MustParseAddr(tt.ip))
		if got != tt.want {
			t.Errorf("ClassifyIP(%s) = %v, want %v", tt.ip, got.Names(), tt.want.Names())
		}
		if tt.text != "" && got.String() != tt.text {
			t.Errorf("ClassifyIP(%s).String() = %q, want %q", tt.ip, got.String(), tt.text)
		}
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct{ in, want, reason string }{
		{"/workspace/a.txt", "/workspace/a.txt", ""},
		{"/workspace//a/./b/", "/workspace/a/b", ""},
		{"file:///workspace/a.txt", "/workspace/a.txt", ""},
		{"/workspace/%41.txt", "/workspace/%41.txt", ""},
		{"/workspace/../etc/passwd", "", "\"..\" segment"},
		{"/workspace/..", "", "\"..\" segment"},
		{"workspace/a", "", "not absolute"},
		{"~/a", "", "not absolute"},
		{"", "", "not absolute"},
		{"/workspace/a\x00.txt", "", "NUL"},
		{"/workspace/a\n", "", "control"},
		{"/workspace\\..\\etc", "", "backslash"},
		{"/workspace/%2e%2e/etc", "", "encoded"},
		{"/workspace/..%2fetc", "", "encoded"},
		{"/workspace/a%00", "", "encoded"},
		{"file:///workspace/../etc", "", "dot segment"},
		{"file://host/workspace", "", "names a host"},
		// Two readers, two paths (issue #14): what a server that cuts
		// "file://" off, decodes twice, decodes UTF-8 laxly, normalises with
		// NFKC or converts with Windows' best fit would read as a traversal.
		{"file:///workspace/x?/../../etc/passwd", "", "query in a file URL"},
		{"file:///workspace/x#/../../etc/passwd", "", "fragment in a file URL"},
		{"file:///workspace/x?a=1", "", "query in a file URL"},
		{"file:////host/share/x", "", "network share"},
		{"//host/share/workspace/x", "", "network share"},
		{"/workspace/%252e%252e/etc/passwd", "", "double percent-encoding"},
		{"/workspace/%25252e%25252e/etc/passwd", "", "double percent-encoding"},
		{"/workspace/%%32%65%%32%65/etc/passwd", "", "double percent-encoding"},
		{"/workspace/%25%32%65%25%32%65/etc/passwd", "", "double percent-encoding"},
		{"/workspace/..%252fetc/passwd", "", "double percent-encoding"},
		{"file:///workspace/%25%32%65%25%32%65/etc", "", "double percent-encoding"},
		{"file:///workspace/%252e%252e/etc", "", "double percent-encoding"},
		{"/workspace/%c0%ae%c0%ae/etc/passwd", "", "not UTF-8"},
		{"/workspace/%c0%af../etc/passwd", "", "not UTF-8"},
		{"/workspace/%e0%80%ae%e0%80%ae/etc/passwd", "", "not UTF-8"},
		{"/workspace/%f0%80%80%ae%f0%80%80%ae/etc/passwd", "", "not UTF-8"},
		{"file:///workspace/%c0%ae%c0%ae/etc/passwd", "", "not UTF-8"},
		{"/workspace/\xc0\xae\xc0\xae/etc", "", "not valid UTF-8"},
		{"/workspace/．．/etc/passwd", "", `NFKC reads as ".."`},       // U+FF0E fullwidth full stop
		{"/workspace/‥/etc/passwd", "", `NFKC reads as ".."`},        // U+2025 two dot leader
		{"/workspace/․․/etc/passwd", "", `NFKC reads as ".."`},       // U+2024 one dot leader
		{"/workspace/﹒﹒/etc/passwd", "", `NFKC reads as ".."`},       // U+FE52 small full stop
		{"/workspace/.\u200b./etc/passwd", "", `NFKC reads as ".."`}, // zero-width space dropped
		{"/workspace/.\u00ad./etc/passwd", "", `NFKC reads as ".."`}, // soft hyphen dropped
		{"/\u200b/host/share", "", "NFKC reads as empty"},            // "//host/share" once dropped
		{"/workspace/\u2060/x", "", "NFKC reads as empty"},           // word joiner
		{"/workspace/…/etc/passwd", "", `NFKC reads as "..."`},       // U+2026 ellipsis
		{"/workspace/%ef%bc%8e%ef%bc%8e/etc/passwd", "", `NFKC reads as ".."`},
		{"file:///workspace/%EF%BC%8E%EF%BC%8E/etc/passwd", "", `NFKC reads as ".."`},
		{"/workspace/x／..／..／etc/passwd", "", `reads as "/"`},      // U+FF0F fullwidth solidus
		{"/workspace/x∕..∕..∕etc/passwd", "", `reads as "/"`},      // U+2215, best fit
		{"/workspace/x＼..＼..＼etc", "", `reads as "\\"`},            // U+FF3C fullwidth reverse solidus
		{"/workspace/x﹨..﹨etc", "", `reads as "\\"`},               // U+FE68 small reverse solidus
		{"/workspace/x¥..¥..¥etc", "", `reads as "\\"`},            // U+00A5, best fit in code page 932
		{"/workspace/x₩..₩etc", "", `reads as "\\"`},               // U+20A9, best fit in code page 949
		{"/workspace/％2e％2e/etc", "", `reads as "%"`},              // U+FF05 fullwidth percent
		{"/workspace/%ef%bc%8f..%ef%bc%8fetc", "", `reads as "/"`}, // U+FF0F, encoded
		{"/workspace/.../etc", "", "only dots and spaces"},
		{"/workspace/.. /etc", "", "only dots and spaces"},
		{"/workspace/..%20/etc", "", "only dots and spaces"},
		{"/workspace/. ./etc", "", "only dots and spaces"},
		{"/workspace/%0a", "", "encoded"},
		// Still one reading: percent signs that start no escape, names
		// with dots, non-ASCII names that NFKC maps to letters.
		{"/workspace/100%.txt", "/workspace/100%.txt", ""},
		{"/workspace/100%25.txt", "/workspace/100%25.txt", ""},
		{"/workspace/a..b/.c/...d", "/workspace/a..b/.c/...d", ""},
		{"/workspace/ｆｕｌｌ/ﬁle.txt", "/workspace/ｆｕｌｌ/ﬁle.txt", ""},
		{"/workspace/%c3%a9t%c3%a9", "/workspace/%c3%a9t%c3%a9", ""},
		{"/workspace/été/日本語.txt", "/workspace/été/日本語.txt", ""},
		{"file:///workspace/%C3%A9t%C3%A9", "/workspace/été", ""},
	}
	for _, tt := range tests {
		got, err := CleanPath(tt.in)
		if tt.reason == "" {
			if err != nil || got != tt.want {
				t.Errorf("CleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("CleanPath(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.reason)
		}
	}
	for _, tt := range []struct {
		p, root string
		want    bool
	}{
		{"/workspace", "/workspace", true},
		{"/workspace/a", "/workspace", true},
		{"/workspace2/a", "/workspace", false},
		{"/works", "/workspace", false},
		{"/etc", "/", true},
	} {
		if got := PathWithin(tt.p, tt.root); got != tt.want {
			t.Errorf("PathWithin(%q, %q) = %v, want %v", tt.p, tt.root, got, tt.want)
		}
	}
}

// FuzzCanonicalHTTPURL is FuzzCanonicalURL with the scheme fixed, so the
// fuzzer spends its time on authorities and paths.
func FuzzCanonicalHTTPURL(f *testing.F) {
	for _, s := range []string{
		"api.weather.gov/", "0xa9.0xfe.0xa9.0xfe/", "[::ffff:169.254.169.254]:8080/x", "a@b.c/",
		"xn--mnchen-3ya.de/%61", "169。254。169。254/", "h/..;/x", "münchen.de./",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rest string) {
		raw := "https://" + rest
		u, err := ParseURL(raw)
		if err != nil {
			return
		}
		otherReadings(t, raw, u)
	})
}

// TestParseURLCanonicalBound: a URL within MaxURLLength whose canonical
// form is not (percent-encoding triples a path) is refused, and one whose
// canonical form is within it is not, on either side of the length below
// which parseURL does not measure the canonical form.
func TestParseURLCanonicalBound(t *testing.T) {
	for _, tt := range []struct {
		quotes int // '"' in the path, each "%22" once canonical
		ok     bool
	}{
		{100, true},
		{1240, true}, // raw below the unmeasured length
		{1300, true},
		{1350, true},
		{1360, false}, // 18 + 3×1360 > 4096
		{1400, false},
	} {
		raw := "https://a.example/" + strings.Repeat(`"`, tt.quotes)
		u, err := ParseURL(raw)
		if (err == nil) != tt.ok {
			t.Errorf("%d quotes: err %v, want ok=%v", tt.quotes, err, tt.ok)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), "once canonical") {
			t.Errorf("%d quotes: %v, want the canonical form's length refused", tt.quotes, err)
		}
		if err == nil && len(u.String()) > MaxURLLength {
			t.Errorf("%d quotes: canonical form of %d bytes accepted", tt.quotes, len(u.String()))
		}
	}
}
