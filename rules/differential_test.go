package rules

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// differentialURLs are tricky URLs, accepted and refused; for every one
// ParseURL accepts, a real WHATWG parser (Node's URL) and Python's urllib
// must read the same host and port.
var differentialURLs = []string{
	"https://api.weather.gov/points/39.7,-104.9", "HTTPS://API.Weather.GOV", "https://api.weather.gov./x",
	"https://example.com:443/", "http://example.com:8080/a?b=c#frag", "https://httpbin.org//anything",
	"https://httpbin.org/%61nything/", "http://127.0.0.1/", "http://[::1]:8080/", "http://[0:0:0:0:0:ffff:a9fe:a9fe]/",
	"https://münchen.de/", "https://xn--mnchen-3ya.de/", "https://1.example.com/", "https://my_host.example.com/",
	"http://evil.com#@api.weather.gov/", "http://evil.com?@api.weather.gov/", "http://evil.com/@api.weather.gov/",
	"http://api.weather.gov%23@evil.com/", "http://api.weather.gov:443@evil.com/", "http://1.2.3.4.nip.io/",
	"http://0x7f000001.example/", "http://[::]/", "https://api.weather.gov@evil.com/", "https://u:p@example.com/",
	"http://2852039166/", "http://0xa9.0xfe.0xa9.0xfe/", "http://0251.0376.0251.0376/", "http://169.254.43518/",
	"http://127.1/", "http://169。254。169。254/", "http://１２７．０．０．１/", "http://%31%32%37.0.0.1/",
	"https://faß.de/", "https://a@b@c/", "https://api.weather.gov\\@evil.com/", "https:evil.com", "https:///evil.com",
	"http://[fe80::1%25eth0]/", "https://x.com:0443/", "https://x.com:/", "https://httpbin.org/x/../anything",
	"https://httpbin.org/x/..;/anything", "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::a9fe:a9fe]/",
	"https://EXAMPLE.com:65535/%7Euser/", "https://a.b-c.d_e.example/x%20y", "http://xn--nxasmq6b.com/",
	"https://example.com/path;params?q=1", "https://example.com/ü", "https://ex%41mple.com/", "http://0/",
	"http://[::1]:65535/", "https://example.com:65536/", "https://ⓔⓧⓐⓜⓟⓛⓔ.com/", "https://exa mple.com/",
	// Non-special schemes: WHATWG keeps the host opaque (no IDNA, no IPv4).
	"weather://forecast/today", "A://ր", "note://0.0.ω.A/", "custom://0x7f.1/", "custom://EXAMPLE.com/",
}

type reading struct {
	OK   bool   `json:"ok"`
	Host string `json:"host"`
	Port string `json:"port"`
	Path string `json:"path"`
}

func readWith(t *testing.T, name string, args []string, urls []string) []reading {
	t.Helper()
	if _, err := exec.LookPath(args[0]); err != nil {
		if testing.Short() {
			t.Skipf("-short: %s is not installed: %v", args[0], err)
		}
		t.Fatalf("%s is not installed (%v): the differential check needs Node and Python 3 on PATH", args[0], err)
	}
	in, _ := json.Marshal(urls)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	var rs []reading
	if err := json.Unmarshal(out, &rs); err != nil || len(rs) != len(urls) {
		t.Fatalf("%s output %q: %v", name, out, err)
	}
	return rs
}

const nodeReader = `
const urls = JSON.parse(require('fs').readFileSync(0, 'utf8'));
console.log(JSON.stringify(urls.map(u => {
  try { const x = new URL(u); return {ok: true, host: x.hostname, port: x.port, path: x.pathname}; }
  catch (e) { return {ok: false}; }
})));`

const pythonReader = `
import json, sys, urllib.parse
out = []
for u in json.load(sys.stdin):
    try:
        p = urllib.parse.urlsplit(u)
        out.append({"ok": True, "host": p.hostname or "", "port": str(p.port or ""), "path": p.path})
    except Exception:
        out.append({"ok": False})
print(json.dumps(out))`

// TestParseURLAgainstOtherParsers is the fuzz property checked against
// real parsers: Node's WHATWG URL and Python's urllib.parse. Set
// MCPGUARD_URL_CORPUS to directories of fuzz corpus files (a path list) to
// check those too, e.g. $(go env GOCACHE)/fuzz/mcpguard.dev/mcpguard/rules/FuzzCanonicalHTTPURL.
func TestParseURLAgainstOtherParsers(t *testing.T) {
	urls := append([]string(nil), differentialURLs...)
	for _, dir := range filepath.SplitList(os.Getenv("MCPGUARD_URL_CORPUS")) {
		prefix := ""
		if filepath.Base(dir) == "FuzzCanonicalHTTPURL" {
			prefix = "https://"
		}
		for _, s := range corpusStrings(t, dir) {
			urls = append(urls, prefix+s)
		}
	}
	node := readWith(t, "node", []string{"node", "-e", nodeReader}, urls)
	py := readWith(t, "python3", []string{"python3", "-c", pythonReader}, urls)
	accepted := 0
	for i, raw := range urls {
		u, err := ParseURL(raw)
		if err != nil {
			continue
		}
		accepted++
		if u.Scheme == "file" {
			continue
		}
		n, p := node[i], py[i]
		if !n.OK {
			t.Errorf("%q: accepted as host %q, Node refuses it", raw, u.Host)
			continue
		}
		if !sameHost(u, strings.Trim(n.Host, "[]")) {
			t.Errorf("%q: canonical host %q, Node reads %q", raw, u.Host, n.Host)
		}
		if n.Port != "" && n.Port != strconv.Itoa(u.Port) {
			t.Errorf("%q: canonical port %d, Node reads %q", raw, u.Port, n.Port)
		}
		if np, err := url.PathUnescape(n.Path); err == nil && mergeSlashes(np) != u.Path && special(u.Scheme) {
			t.Errorf("%q: canonical path %q, Node reads %q", raw, u.Path, n.Path)
		}
		if !p.OK {
			t.Errorf("%q: accepted as host %q, Python refuses it", raw, u.Host)
			continue
		}
		if !sameHost(u, p.Host) {
			t.Errorf("%q: canonical host %q, Python reads %q", raw, u.Host, p.Host)
		}
		if p.Port != "" && p.Port != strconv.Itoa(u.Port) {
			t.Errorf("%q: canonical port %d, Python reads %q", raw, u.Port, p.Port)
		}
	}
	if accepted == 0 {
		t.Fatal("no URL was accepted; the comparison checked nothing")
	}
	t.Logf("%d URLs, %d accepted and read alike by Node and Python", len(urls), accepted)
}

// sameHost reports whether another parser's host is the canonical one:
// the same address, or the same name once lower-cased, IDNA-encoded and
// stripped of one trailing dot.
func sameHost(u *URL, other string) bool {
	if a, err := netip.ParseAddr(other); err == nil {
		return a == u.IP
	}
	if u.IP.IsValid() {
		return false
	}
	other = strings.TrimSuffix(strings.ToLower(other), ".")
	if ascii, err := idna.Lookup.ToASCII(other); err == nil {
		other = ascii
	}
	return other == u.Host
}

func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// corpusStrings reads the string inputs of Go fuzz corpus files.
func corpusStrings(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			if s, ok := strings.CutPrefix(line, "string("); ok {
				if v, err := strconv.Unquote(strings.TrimSuffix(s, ")")); err == nil {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

func special(scheme string) bool {
	_, ok := defaultPort(scheme)
	return ok
}
