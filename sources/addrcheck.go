package sources

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrRefusedAddress reports a feed URL, a redirect or a connection refused
// because it reaches a cloud's instance metadata service: a link-local
// address, a metadata address outside that range, or a metadata host name.
// The service hands out the machine's credentials to whoever asks, so a
// feed URL (written by whoever may edit the configuration, or a redirect
// chosen by the feed's server) must not be able to read it. Test for it
// with errors.Is.
var ErrRefusedAddress = errors.New("address refused")

// metadataNames are the host names of cloud metadata services, refused
// before any DNS lookup: inside the cloud they resolve to the service,
// and outside it they may resolve to anything.
//
//   - metadata.google.internal, metadata.goog and metadata: Google Compute
//     Engine ("View and query VM metadata",
//     cloud.google.com/compute/docs/metadata/querying-metadata);
//   - instance-data and instance-data.ec2.internal: Amazon EC2 (names the
//     Amazon-provided DNS answers with 169.254.169.254; older EC2 guides
//     use http://instance-data/latest/meta-data/).
//
// The addresses these names resolve to are refused by address too
// (refusedAddr); the names cover a request made through a proxy, which
// resolves them itself.
var metadataNames = []string{
	"metadata.google.internal",
	"metadata.goog",
	"metadata",
	"instance-data",
	"instance-data.ec2.internal",
}

// Metadata addresses outside the link-local ranges.
var (
	// awsIMDSv6 is the EC2 instance metadata service on IPv6 (in fd00::/8,
	// unique-local, not link-local).
	awsIMDSv6 = netip.MustParseAddr("fd00:ec2::254")
	// alibabaMetadata is Alibaba Cloud's ECS metadata service (in
	// 100.64.0.0/10, shared address space, not link-local).
	alibabaMetadata = netip.MustParseAddr("100.100.100.200")
)

// refusedAddr says why a feed may not connect to ip, or "" when it may.
// Refused: link-local addresses (169.254.0.0/16, where AWS, Azure, Google,
// Oracle and others answer on 169.254.169.254, and fe80::/10) and the two
// metadata addresses outside them, also written as IPv4-mapped IPv6
// (::ffff:169.254.169.254). Loopback and the private ranges stay allowed:
// on-premises calendar servers and tests live there.
func refusedAddr(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLinkLocalUnicast():
		return "link-local, where cloud metadata services answer"
	case ip == awsIMDSv6:
		return "the EC2 instance metadata service's IPv6 address"
	case ip == alibabaMetadata:
		return "Alibaba Cloud's metadata service address"
	}
	return ""
}

// refusedName says why a feed may not name host, or "" when it may: host
// is a metadata service name or an IP literal refusedAddr refuses. Host
// names compare without case and without a final dot.
func refusedName(host string) string {
	if ip, err := netip.ParseAddr(host); err == nil {
		return refusedAddr(ip)
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, m := range metadataNames {
		if name == m {
			return "the name of a cloud metadata service"
		}
	}
	return ""
}

// checkHost refuses a URL's host (u.Hostname()) that refusedName refuses.
func checkHost(host string) error {
	if why := refusedName(host); why != "" {
		return refusal(host, why)
	}
	return nil
}

func refusal(host, why string) error {
	return fmt.Errorf("%w: %s is %s", ErrRefusedAddress, host, why)
}

// allowPrivateHint adds to an ErrRefusedAddress what to do about it, for
// the source named name; other errors it returns as they are.
func allowPrivateHint(name string, err error) error {
	if !errors.Is(err, ErrRefusedAddress) {
		return err
	}
	if name == "" {
		return fmt.Errorf("%w; set allow_private: true on the source if this feed is meant to reach it", err)
	}
	return fmt.Errorf("%w; set allow_private: true on source %q if this feed is meant to reach it", err, name)
}

// guardDialer makes d refuse, after name resolution and before
// connecting, every address refusedAddr refuses. Checking the address
// actually dialed, not the one a URL names, covers a name that resolves
// there (DNS rebinding included: the answer checked is the one used) and
// spellings of an address that only the resolver understands (2852039166
// for 169.254.169.254). Through a proxy the check sees the proxy's
// address, not the feed's: the URL's host is checked by name only
// (checkHost), and the proxy resolves it. A ControlContext d already has
// runs after the check.
func guardDialer(d *net.Dialer) *net.Dialer {
	next := d.ControlContext
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		if err := checkDial(ctx, network, address, c); err != nil {
			return err
		}
		if next != nil {
			return next(ctx, network, address, c)
		}
		return nil
	}
	return d
}

// checkDial is a net.Dialer.ControlContext: it runs once the socket
// exists and before it connects.
func checkDial(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Fail closed: the dialer always gives an IP and a port here.
		return fmt.Errorf("dial address %q: %w", address, ErrRefusedAddress)
	}
	if why := refusedAddr(ap.Addr()); why != "" {
		return refusal(ap.Addr().String(), why)
	}
	return nil
}

// sharedSpace is 100.64.0.0/10, the carrier-grade NAT range (RFC 6598):
// not routed on the internet, and where some clouds put services.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// notPublic says why a URL a person gave (FetchRequest.PublicOnly) may not
// reach ip, or "" when it may: every address refusedAddr refuses, and
// loopback, private (RFC 1918), shared (RFC 6598), unique-local (fc00::/7),
// unspecified and multicast addresses, which only the worker's own
// network reaches.
func notPublic(ip netip.Addr) string {
	ip = ip.Unmap()
	if why := refusedAddr(ip); why != "" {
		return why
	}
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsPrivate():
		return "a private address"
	case sharedSpace.Contains(ip):
		return "in the shared address space (100.64.0.0/10)"
	case ip.IsUnspecified(), ip.IsMulticast(), ip.IsInterfaceLocalMulticast(), ip.IsLinkLocalMulticast():
		return "not a unicast address"
	}
	return ""
}

// checkPublicHost refuses a host a person's URL names that notPublic
// refuses (an IP literal), that names a metadata service, or that is
// localhost. A name is checked again by address when it is dialed
// (publicDialer).
func checkPublicHost(host string) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		if why := notPublic(ip); why != "" {
			return publicRefusal(host, why)
		}
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return publicRefusal(host, "a loopback name")
	}
	if why := refusedName(host); why != "" {
		return publicRefusal(host, why)
	}
	return nil
}

func publicRefusal(host, why string) error {
	return fmt.Errorf("%w: %s is %s, and a person's own feed must be on the internet", ErrRefusedAddress, host, why)
}

// publicDialer makes d refuse, after name resolution and before
// connecting, every address notPublic refuses (as guardDialer does for
// refusedAddr). Through a proxy it is the proxy's address that is
// checked: a proxy on a private address refuses every such feed.
func publicDialer(d *net.Dialer) *net.Dialer {
	next := d.ControlContext
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial address %q: %w", address, ErrRefusedAddress)
		}
		if why := notPublic(ap.Addr()); why != "" {
			return publicRefusal(ap.Addr().String(), why)
		}
		if next != nil {
			return next(ctx, network, address, c)
		}
		return nil
	}
	return d
}
