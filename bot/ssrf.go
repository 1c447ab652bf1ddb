package bot

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// blockedPrefixes are the special-purpose ranges (IANA IPv4 and IPv6
// special-purpose registries) that a preview fetch must never reach, beyond
// what netip's Is* methods cover. Anything not publicly routable is here:
// an attacker who controls a link or its DNS must not make the server talk
// to its own network.
var blockedPrefixes = [...]netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: embeds an IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ORCHID…)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("3fff::/20"),       // documentation
	netip.MustParsePrefix("5f00::/16"),       // segment routing SIDs
}

// errRefused marks a connection refused because its address is not public.
var errRefused = errors.New("refusing to connect")

// globalUnicast6 is the only IPv6 range in use on the public internet.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// checkAddr returns an error unless a preview fetch may connect to ip.
// IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) are judged as the IPv4
// address they carry. allowLoopback exists for tests against httptest
// servers.
func checkAddr(ip netip.Addr, allowLoopback bool) error {
	ip = ip.Unmap().WithZone("")
	var kind string
	switch {
	case !ip.IsValid():
		kind = "invalid"
	case ip.IsLoopback():
		if allowLoopback {
			return nil
		}
		kind = "loopback"
	case ip.IsPrivate():
		kind = "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		kind = "link-local"
	case ip.IsUnspecified():
		kind = "unspecified"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		kind = "multicast"
	case ip.Is6() && !globalUnicast6.Contains(ip):
		kind = "non-global IPv6"
	default:
		for _, p := range blockedPrefixes {
			if p.Contains(ip) {
				kind = "reserved"
				break
			}
		}
		if kind == "" {
			return nil
		}
	}
	return fmt.Errorf("%w to %s (%s address)", errRefused, ip, kind)
}

// numericHost reports whether host would be read as an IPv4 address by
// browsers and libc (WHATWG: its last label is a number), for forms such as
// "2130706433", "0x7f.1" or "0177.0.0.1". Only canonical dotted-decimal
// addresses are accepted, so a check never judges one address while the
// connection goes to another.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if strings.HasPrefix(last, "0x") || strings.HasPrefix(last, "0X") {
		return strings.Trim(last[2:], "0123456789abcdefABCDEF") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}
