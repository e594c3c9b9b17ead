package rules

import (
	"fmt"
	"net/netip"
	"strings"
)

// IPClass is a bit set of the address classes a policy may deny. An address
// may be in several classes at once: 169.254.169.254 is cloud metadata and
// link-local.
type IPClass uint32

// The classes, in the order their names are listed. Policies name them with
// the strings of [IPClass.Names] ("loopback", "cloud-metadata", …).
const (
	ClassCloudMetadata IPClass = 1 << iota // instance metadata and credential endpoints
	ClassLoopback                          // 127.0.0.0/8, ::1
	ClassPrivate                           // RFC 1918, fc00::/7, local-use NAT64 64:ff9b:1::/48
	ClassLinkLocal                         // 169.254.0.0/16, fe80::/10
	ClassUnspecified                       // 0.0.0.0/8 ("this network"; 0.0.0.0 reaches localhost on Linux), ::
	ClassMulticast                         // 224.0.0.0/4, ff00::/8
	ClassCGNAT                             // 100.64.0.0/10 (RFC 6598)
	ClassBroadcast                         // 255.255.255.255
	ClassDocumentation                     // 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20
	ClassBenchmarking                      // 198.18.0.0/15, 2001:2::/48
	ClassReserved                          // 240.0.0.0/4, 192.0.0.0/24, 100::/64 and other special-purpose blocks
)

// ClassesNonPublic is every class: an address in none of them is a public
// unicast address.
const ClassesNonPublic = ClassCloudMetadata | ClassLoopback | ClassPrivate | ClassLinkLocal |
	ClassUnspecified | ClassMulticast | ClassCGNAT | ClassBroadcast | ClassDocumentation |
	ClassBenchmarking | ClassReserved

var classNames = []struct {
	class IPClass
	name  string // as written in a policy
	human string // as written in a reason
}{
	{ClassCloudMetadata, "cloud-metadata", "cloud metadata"},
	{ClassLoopback, "loopback", "loopback"},
	{ClassPrivate, "private", "private"},
	{ClassLinkLocal, "link-local", "link-local"},
	{ClassUnspecified, "unspecified", "unspecified"},
	{ClassMulticast, "multicast", "multicast"},
	{ClassCGNAT, "cgnat", "carrier-grade NAT"},
	{ClassBroadcast, "broadcast", "broadcast"},
	{ClassDocumentation, "documentation", "documentation"},
	{ClassBenchmarking, "benchmarking", "benchmarking"},
	{ClassReserved, "reserved", "reserved"},
}

// ParseIPClass returns the class a policy names: one of the names of
// [IPClass.Names], or "non-public" for all of them.
func ParseIPClass(name string) (IPClass, bool) {
	if name == "non-public" {
		return ClassesNonPublic, true
	}
	for _, c := range classNames {
		if c.name == name {
			return c.class, true
		}
	}
	return 0, false
}

// IPClassNames lists the names a policy may use, for error messages.
func IPClassNames() []string {
	names := make([]string, 0, len(classNames)+1)
	for _, c := range classNames {
		names = append(names, c.name)
	}
	return append(names, "non-public")
}

// Names returns the policy names of the classes in c, most specific first.
func (c IPClass) Names() []string {
	var names []string
	for _, n := range classNames {
		if c&n.class != 0 {
			names = append(names, n.name)
		}
	}
	return names
}

// String describes c for a person: the most specific class first and the
// others in parentheses, e.g. "cloud metadata (link-local)"; "public" when c
// is empty.
func (c IPClass) String() string {
	var first string
	var rest []string
	for _, n := range classNames {
		if c&n.class == 0 {
			continue
		}
		if first == "" {
			first = n.human
		} else {
			rest = append(rest, n.human)
		}
	}
	switch {
	case first == "":
		return "public"
	case len(rest) == 0:
		return first
	default:
		return first + " (" + strings.Join(rest, ", ") + ")"
	}
}

type classPrefix struct {
	prefix netip.Prefix
	class  IPClass
}

func mustPrefixes(class IPClass, cidrs ...string) []classPrefix {
	out := make([]classPrefix, len(cidrs))
	for i, s := range cidrs {
		out[i] = classPrefix{netip.MustParsePrefix(s), class}
	}
	return out
}

// classTable lists the special-purpose blocks of the IANA IPv4 and IPv6
// registries that a tool server must not be pointed at, plus the metadata
// endpoints of the major clouds.
var classTable = concat(
	mustPrefixes(ClassCloudMetadata,
		"169.254.169.254/32", // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack IMDS
		"169.254.169.253/32", // AWS VPC DNS
		"169.254.169.123/32", // AWS time sync
		"169.254.170.2/32",   // AWS ECS task metadata and credentials
		"169.254.170.23/32",  // AWS EKS pod identity agent
		"100.100.100.200/32", // Alibaba Cloud metadata
		"192.0.0.192/32",     // Oracle Cloud metadata (legacy)
		"168.63.129.16/32",   // Azure WireServer
		"fd00:ec2::254/128",  // AWS IMDS over IPv6
		"fd00:ec2::23/128",   // AWS EKS pod identity over IPv6
		"fd00:ec2::123/128",  // AWS time sync over IPv6
	),
	mustPrefixes(ClassLoopback, "127.0.0.0/8", "::1/128"),
	mustPrefixes(ClassPrivate, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "64:ff9b:1::/48"),
	mustPrefixes(ClassLinkLocal, "169.254.0.0/16", "fe80::/10"),
	mustPrefixes(ClassUnspecified, "0.0.0.0/8", "::/128"),
	mustPrefixes(ClassMulticast, "224.0.0.0/4", "ff00::/8"),
	mustPrefixes(ClassCGNAT, "100.64.0.0/10"),
	mustPrefixes(ClassBroadcast, "255.255.255.255/32"),
	mustPrefixes(ClassDocumentation, "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
	mustPrefixes(ClassBenchmarking, "198.18.0.0/15", "2001:2::/48"),
	mustPrefixes(ClassReserved, "240.0.0.0/4", "192.0.0.0/24", "192.88.99.0/24", "100::/64", "2001::/23", "5f00::/16"),
)

func concat(lists ...[]classPrefix) []classPrefix {
	var out []classPrefix
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// IPv6 prefixes that carry an IPv4 address, and where.
var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: last 32 bits
	compatPrefix = netip.MustParsePrefix("::/96")        // RFC 4291 §2.5.5.1 (deprecated): last 32 bits
	sixToFour    = netip.MustParsePrefix("2002::/16")    // RFC 3056: bits 16–47
	teredo       = netip.MustParsePrefix("2001::/32")    // RFC 4380: client address, inverted, last 32 bits
	siitPrefix   = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// EmbeddedIPv4 returns the IPv4 address an IPv6 address carries in one of the
// forms a dual-stack host or a translator turns back into IPv4: mapped
// (::ffff:a.b.c.d), compatible (::a.b.c.d), SIIT translated, NAT64
// (64:ff9b::/96), 6to4 (2002::/16) and Teredo (2001::/32).
func EmbeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	last := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	switch {
	case nat64Prefix.Contains(a), siitPrefix.Contains(a):
		return last, true
	case compatPrefix.Contains(a):
		// :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1.
		if a == netip.IPv6Unspecified() || a == netip.IPv6Loopback() {
			return netip.Addr{}, false
		}
		return last, true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case teredo.Contains(a):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	}
	return netip.Addr{}, false
}

// ClassifyIP returns the classes of a, including those of any IPv4 address it
// embeds (see [EmbeddedIPv4]), so ::ffff:169.254.169.254 and
// 64:ff9b::a9fe:a9fe are cloud metadata like 169.254.169.254. The zone of a
// scoped address is ignored.
func ClassifyIP(a netip.Addr) IPClass {
	a = a.WithZone("")
	var c IPClass
	if v4, ok := EmbeddedIPv4(a); ok {
		c |= classify(v4)
		if a.Is4In6() {
			return c
		}
	}
	return c | classify(a)
}

func classify(a netip.Addr) IPClass {
	var c IPClass
	for _, p := range classTable {
		if p.prefix.Contains(a) {
			c |= p.class
		}
	}
	return c
}

// describeIP says what an address is for a reason, naming the IPv4 address
// it embeds when its text does not show it: "64:ff9b::a9fe:a9fe (169.254.169.254)".
func describeIP(a netip.Addr) string {
	if v4, ok := EmbeddedIPv4(a); ok && !a.Is4In6() { // ::ffff:1.2.3.4 already shows it
		return fmt.Sprintf("%s (%s)", a, v4)
	}
	return a.String()
}
