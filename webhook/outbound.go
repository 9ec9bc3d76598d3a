package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefusedAddress means an endpoint resolved to an address that outbound
// requests may not reach (see Guard).
var ErrRefusedAddress = errors.New("webhook: refused address")

// refusedPrefixes are special-purpose ranges refused besides those the
// netip predicates name (loopback, private, link-local, multicast,
// unspecified): "this network", shared address space (carrier-grade NAT),
// IETF protocol assignments, benchmarking, and the reserved 240/4 with the
// broadcast address.
var refusedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// Guard decides which addresses outbound webhook requests may reach. By
// default it refuses loopback, private (RFC 1918, unique local fc00::/7),
// link-local, multicast and unspecified addresses and the ranges above, so
// that an endpoint cannot make the worker call into its own network (SSRF).
// It is checked on the address actually dialled (net.Dialer.Control), after
// DNS resolution, so a name that resolves to a public address at
// registration and to a private one later (DNS rebinding) is still refused.
type Guard struct {
	// AllowPrivate lets every address through (TALLY_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Allowed are networks let through although they would be refused
	// (TALLY_WEBHOOK_ALLOWED_CIDRS), such as a partner's private link.
	Allowed []netip.Prefix
}

// Check returns an error wrapping ErrRefusedAddress when ip may not be reached.
func (g *Guard) Check(ip netip.Addr) error {
	ip = ip.Unmap()
	if g != nil {
		if g.AllowPrivate {
			return nil
		}
		for _, p := range g.Allowed {
			if p.Contains(ip) {
				return nil
			}
		}
	}
	var why string
	switch {
	case !ip.IsValid():
		why = "invalid"
	case ip.IsLoopback():
		why = "loopback"
	case ip.IsPrivate():
		why = "private"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		why = "link-local"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		why = "multicast"
	case ip.IsUnspecified():
		why = "unspecified"
	default:
		for _, p := range refusedPrefixes {
			if p.Contains(ip) {
				why = "reserved"
				break
			}
		}
	}
	if why != "" {
		return fmt.Errorf("%w: %s is a %s address", ErrRefusedAddress, ip, why)
	}
	return nil
}

// control is a net.Dialer.Control: it runs on the resolved address of each
// connection attempt, before the connection is made.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an address", ErrRefusedAddress, address)
	}
	return g.Check(ap.Addr())
}

// MaxResponseBody is how much of a receiver's answer is read: enough to
// reuse the connection after a short answer, never a large one.
const MaxResponseBody = 64 << 10

// NewClient returns the HTTP client of deliveries: addresses checked by g
// at dial time, no proxy from the environment (a proxy would dial for it),
// no redirects followed (a 3xx is the answer, a failure), and timeout over
// the whole exchange.
func NewClient(g *Guard, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, Control: g.control}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// URLPolicy is what ValidateURL accepts.
type URLPolicy struct {
	// AllowHTTP accepts http:// URLs; otherwise https is required.
	AllowHTTP bool
	// Guard refuses URLs whose host is a literal address it refuses; names
	// are checked when dialled.
	Guard *Guard
}

// MaxURLLen is the longest endpoint URL accepted.
const MaxURLLen = 2000

// ValidateURL checks an endpoint URL at registration: absolute, https (or
// http when allowed), a host, no credentials (they would be stored and
// listed in clear), no fragment, and not a literal address the guard
// refuses. It returns the URL as it will be stored.
func ValidateURL(raw string, p URLPolicy) (string, error) {
	if len(raw) > MaxURLLen {
		return "", fmt.Errorf("the URL is longer than %d characters", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowHTTP {
			return "", fmt.Errorf("%q: webhooks need https (http only in development)", raw)
		}
	default:
		return "", fmt.Errorf("%q: the scheme must be https", raw)
	}
	if u.Hostname() == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("%q holds credentials: a receiver verifies the signature instead", raw)
	}
	if u.Fragment != "" || strings.HasSuffix(raw, "#") {
		return "", fmt.Errorf("%q has a fragment", raw)
	}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		if err := p.Guard.Check(ip); err != nil {
			return "", fmt.Errorf("%q: %w", raw, err)
		}
	}
	return u.String(), nil
}
