package sources

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRefusedAddr(t *testing.T) {
	tests := []struct {
		addr    string
		refused bool
	}{
		// Link-local IPv4, where the metadata services answer.
		{"169.254.169.254", true},
		{"169.254.0.0", true},
		{"169.254.0.1", true},
		{"169.254.170.2", true}, // ECS task metadata
		{"169.254.255.255", true},
		{"169.253.255.255", false},
		{"169.255.0.0", false},
		// Link-local IPv6 (fe80::/10), with and without a zone.
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fe80::a9fe:a9fe", true},
		{"febf:ffff::1", true},
		{"fec0::1", false},
		{"fe7f::1", false},
		// IPv4-mapped IPv6.
		{"::ffff:169.254.169.254", true},
		{"::ffff:a9fe:a9fe", true},
		{"::ffff:100.100.100.200", true},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		// Metadata addresses outside link-local.
		{"fd00:ec2::254", true},
		{"fd00:ec2::253", false},
		{"fd00::1", false},
		{"100.100.100.200", true},
		{"100.100.100.201", false},
		{"100.64.0.1", false},
		// Loopback and private ranges: on-premises servers and tests.
		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"10.0.0.1", false},
		{"172.16.0.1", false},
		{"192.168.1.10", false},
		{"0.0.0.0", false},
		{"::", false},
		// Public.
		{"8.8.8.8", false},
		{"2001:4860:4860::8888", false},
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.addr)
		if got := refusedAddr(ip) != ""; got != tt.refused {
			t.Errorf("refusedAddr(%s) = %q; want refused %v", tt.addr, refusedAddr(ip), tt.refused)
		}
	}
}

func TestRefusedName(t *testing.T) {
	tests := []struct {
		host    string
		refused bool
	}{
		{"metadata.google.internal", true},
		{"METADATA.Google.Internal", true},
		{"metadata.google.internal.", true},
		{"metadata.goog", true},
		{"metadata", true},
		{"instance-data", true},
		{"instance-data.ec2.internal", true},
		{"169.254.169.254", true},
		{"::ffff:169.254.169.254", true},
		{"fe80::1%eth0", true},
		{"fd00:ec2::254", true},
		{"100.100.100.200", true},
		{"metadata.example.com", false},
		{"google.internal", false},
		{"my-metadata", false},
		{"calendar.corp.internal", false},
		{"localhost", false},
		{"127.0.0.1", false},
		{"::1", false},
		{"example.zoom.us", false},
		// A spelling only a resolver reads as 169.254.169.254 is a name
		// here; the dial check sees the address it resolves to.
		{"2852039166", false},
	}
	for _, tt := range tests {
		if got := refusedName(tt.host) != ""; got != tt.refused {
			t.Errorf("refusedName(%q) = %q; want refused %v", tt.host, refusedName(tt.host), tt.refused)
		}
	}
}

// TestCheckDial: the dial check on the address the dialer gives, IPv6
// included (dialed nowhere: checkDial alone).
func TestCheckDial(t *testing.T) {
	for _, addr := range []string{"169.254.169.254:80", "[fe80::1%eth0]:443", "[fd00:ec2::254]:80", "100.100.100.200:80", "[::ffff:169.254.169.254]:80", "not an address"} {
		if err := checkDial(context.Background(), "tcp", addr, nil); !errors.Is(err, ErrRefusedAddress) {
			t.Errorf("checkDial(%q) = %v; want ErrRefusedAddress", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:80", "[::1]:443", "10.1.2.3:8443", "[2001:db8::1]:80"} {
		if err := checkDial(context.Background(), "tcp", addr, nil); err != nil {
			t.Errorf("checkDial(%q) = %v; want nil", addr, err)
		}
	}
}

// loopbackOnly is a net.Dialer.ControlContext under the code under test:
// whatever that lets through, a test never connects to anything but
// loopback. It runs before connecting.
func loopbackOnly(t *testing.T) func(context.Context, string, string, syscall.RawConn) error {
	return func(_ context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			t.Errorf("dial %s: a test connects to loopback only", address)
			return errors.New("test: not loopback")
		}
		return nil
	}
}

// fakeDNS is a resolver that answers A queries from names (name → IPv4
// address) without leaving the process; a name not in names fails the
// test (NXDOMAIN). It speaks DNS over a stream (net.Pipe), as Go's
// resolver does on a connection that is not a PacketConn.
func fakeDNS(t *testing.T, names map[string]string) *net.Resolver {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer server.Close()
			for {
				var n [2]byte
				if _, err := io.ReadFull(server, n[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(n[:]))
				if _, err := io.ReadFull(server, q); err != nil {
					return
				}
				if _, err := server.Write(dnsAnswer(t, q, names)); err != nil {
					return
				}
			}
		}()
		return client, nil
	}}
}

// dnsAnswer answers the query q (RFC 1035 §4.1), with the 2-byte length
// prefix of DNS over TCP.
func dnsAnswer(t *testing.T, q []byte, names map[string]string) []byte {
	// The question: labels from offset 12 to a zero byte, then type and class.
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	question := q[12 : i+5]
	name := strings.ToLower(strings.Join(labels, "."))
	ip, known := names[name]
	if !known {
		t.Errorf("DNS lookup of %q; want none", name)
	}
	msg := binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(q)) // id
	rcode := uint16(0)
	if !known {
		rcode = 3 // NXDOMAIN
	}
	msg = binary.BigEndian.AppendUint16(msg, 0x8180|rcode) // response, recursion desired and available
	answers := uint16(0)
	if known && qtype == 1 { // A; AAAA gets no answer
		answers = 1
	}
	msg = binary.BigEndian.AppendUint16(msg, 1)
	msg = binary.BigEndian.AppendUint16(msg, answers)
	msg = append(msg, 0, 0, 0, 0)
	msg = append(msg, question...)
	if answers == 1 {
		a := netip.MustParseAddr(ip).As4()
		msg = append(msg, 0xc0, 12) // the question's name
		msg = binary.BigEndian.AppendUint16(msg, 1)
		msg = binary.BigEndian.AppendUint16(msg, 1)
		msg = binary.BigEndian.AppendUint32(msg, 60)
		msg = binary.BigEndian.AppendUint16(msg, 4)
		msg = append(msg, a[:]...)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
}

// testFetcher is NewFetcher's Fetcher resolving names with fakeDNS(names)
// and connecting to loopback only.
func testFetcher(t *testing.T, names map[string]string) *Fetcher {
	return newFetcher(5*time.Second, 0, &net.Dialer{Timeout: 5 * time.Second, Resolver: fakeDNS(t, names), ControlContext: loopbackOnly(t)})
}

func feedServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/feed.ics", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestFetchLoopbackAllowed: loopback feeds, by address or by a name that
// resolves there, and redirects between them, are fetched.
func TestFetchLoopbackAllowed(t *testing.T) {
	srv := feedServer(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	f := testFetcher(t, map[string]string{"calendar.corp.example": "127.0.0.1"})
	for _, u := range []string{
		srv.URL + "/feed.ics",
		srv.URL + "/moved?to=/feed.ics",
		srv.URL + "/moved?to=" + "http://calendar.corp.example:" + strconv.Itoa(port) + "/feed.ics",
		"http://calendar.corp.example:" + strconv.Itoa(port) + "/feed.ics",
	} {
		res, err := f.Fetch(context.Background(), FetchRequest{Name: "team", URL: u})
		if err != nil || !strings.HasPrefix(string(res.Body), "BEGIN:VCALENDAR") {
			t.Errorf("Fetch(%s) = %q, %v; want the feed", u, res.Body, err)
		}
	}
}

// TestFetchRedirectToMetadataRefused: a loopback feed that redirects to
// the metadata service is refused, with an error that names the source,
// keeps the feed URL's secret out and says what to do.
func TestFetchRedirectToMetadataRefused(t *testing.T) {
	srv := feedServer(t)
	f := testFetcher(t, nil)
	_, err := f.Fetch(context.Background(), FetchRequest{Name: "team", URL: srv.URL + "/moved?token=s3cr3t&to=http://169.254.169.254/latest/meta-data/"})
	want := "fetch " + srv.URL + "/moved?<redacted>: redirect to http://169.254.169.254/latest/meta-data/: address refused: " +
		"169.254.169.254 is link-local, where cloud metadata services answer; " +
		`set allow_private: true on source "team" if this feed is meant to reach it`
	if err == nil || err.Error() != want {
		t.Fatalf("Fetch = %v;\nwant %s", err, want)
	}
	if !errors.Is(err, ErrRefusedAddress) {
		t.Errorf("Fetch error %v is not ErrRefusedAddress", err)
	}
}

// TestFetchMetadataNameRefused: a feed URL naming a metadata service, or
// a refused address literal, is refused before any lookup or dial.
func TestFetchMetadataNameRefused(t *testing.T) {
	f := testFetcher(t, nil) // any lookup fails the test
	for _, u := range []string{
		"http://metadata.google.internal/computeMetadata/v1/",
		"http://METADATA.GOOGLE.INTERNAL./computeMetadata/v1/",
		"https://metadata.goog/computeMetadata/v1/",
		"http://metadata/computeMetadata/v1/",
		"http://instance-data/latest/meta-data/",
		"http://instance-data.ec2.internal/latest/meta-data/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:169.254.169.254]/latest/meta-data/",
		"http://[::ffff:a9fe:a9fe]/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://100.100.100.200/latest/meta-data/",
		"http://[fe80::1%25eth0]:8080/feed.ics",
	} {
		_, err := f.Fetch(context.Background(), FetchRequest{Name: "team", URL: u})
		if !errors.Is(err, ErrRefusedAddress) || !strings.Contains(err.Error(), `set allow_private: true on source "team"`) {
			t.Errorf("Fetch(%s) = %v; want ErrRefusedAddress naming the source", u, err)
		}
	}
}

// TestFetchResolvedLinkLocalRefused: a name that resolves to a link-local
// address (DNS rebinding, or a name for the metadata service not in the
// list) is refused at dial time, before connecting.
func TestFetchResolvedLinkLocalRefused(t *testing.T) {
	f := testFetcher(t, map[string]string{"feed.rebind.example": "169.254.169.254"})
	_, err := f.Fetch(context.Background(), FetchRequest{Name: "team", URL: "http://feed.rebind.example/feed.ics?token=s3cr3t"})
	want := "fetch http://feed.rebind.example/feed.ics?<redacted>: dial tcp 169.254.169.254:80: address refused: " +
		"169.254.169.254 is link-local, where cloud metadata services answer; " +
		`set allow_private: true on source "team" if this feed is meant to reach it`
	if err == nil || err.Error() != want {
		t.Fatalf("Fetch = %v;\nwant %s", err, want)
	}
	if !errors.Is(err, ErrRefusedAddress) {
		t.Errorf("Fetch error %v is not ErrRefusedAddress", err)
	}
}

// TestGuardDialer: the guarded dialer refuses a link-local address, also
// IPv4-mapped, before connecting, and connects to loopback.
func TestGuardDialer(t *testing.T) {
	d := guardDialer(&net.Dialer{Timeout: 5 * time.Second, Resolver: fakeDNS(t, nil), ControlContext: loopbackOnly(t)})
	for _, addr := range []string{"169.254.169.254:80", "[::ffff:169.254.169.254]:80", "100.100.100.200:80"} {
		if c, err := d.DialContext(context.Background(), "tcp", addr); !errors.Is(err, ErrRefusedAddress) {
			if c != nil {
				c.Close()
			}
			t.Errorf("DialContext(%s) = %v; want ErrRefusedAddress", addr, err)
		}
	}
	srv := feedServer(t)
	c, err := d.DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("DialContext(%s) = %v; want a connection", srv.Listener.Addr(), err)
	}
	c.Close()
}

// TestFetchAllowPrivate: with AllowPrivate, neither the URL's host nor a
// redirect nor the dialed address is refused. The private client's dialer
// is pointed at the loopback server, so nothing leaves the machine.
func TestFetchAllowPrivate(t *testing.T) {
	srv := feedServer(t)
	f := testFetcher(t, nil)
	if f.PrivateClient.Transport == f.Client.Transport {
		t.Fatal("PrivateClient shares Client's transport (and connection pool)")
	}
	var dialed []string
	var mu sync.Mutex
	f.PrivateClient.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return (&net.Dialer{ControlContext: loopbackOnly(t)}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	for _, u := range []string{
		"http://metadata.google.internal/feed.ics",
		"http://169.254.169.254/feed.ics",
		"http://[::ffff:169.254.169.254]/feed.ics",
		srv.URL + "/moved?to=http://169.254.169.254/feed.ics",
	} {
		_, err := f.Fetch(context.Background(), FetchRequest{Name: "team", URL: u})
		if !errors.Is(err, ErrRefusedAddress) {
			t.Errorf("Fetch(%s) without AllowPrivate = %v; want ErrRefusedAddress", u, err)
		}
		res, err := f.Fetch(context.Background(), FetchRequest{Name: "team", URL: u, AllowPrivate: true})
		if err != nil || !strings.HasPrefix(string(res.Body), "BEGIN:VCALENDAR") {
			t.Errorf("Fetch(%s) with AllowPrivate = %q, %v; want the feed", u, res.Body, err)
		}
	}
	if len(dialed) == 0 {
		t.Error("the private client dialed nothing")
	}
}

// TestNotPublic: what a person's own feed may reach.
func TestNotPublic(t *testing.T) {
	for addr, public := range map[string]bool{
		"8.8.8.8": true, "142.250.74.46": true, "2a00:1450:4001:82b::200e": true, "100.63.255.255": true, "100.128.0.1": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.9": false, "192.168.1.1": false,
		"100.64.0.1": false, "100.127.255.254": false, "fd12::1": false, "169.254.169.254": false, "fe80::1": false,
		"0.0.0.0": false, "::": false, "224.0.0.251": false, "::ffff:10.0.0.1": false, "::ffff:8.8.8.8": true,
	} {
		why := notPublic(netip.MustParseAddr(addr))
		if (why == "") != public {
			t.Errorf("notPublic(%s) = %q; want public %v", addr, why, public)
		}
	}
}

// TestFetchPublicOnly: a person's feed (PublicOnly) may not name, resolve
// to or be redirected to loopback or a private address, nor be a file;
// AllowPrivate does not lift that. The errors keep the URL's secret out.
func TestFetchPublicOnly(t *testing.T) {
	srv := feedServer(t)
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	f := testFetcher(t, map[string]string{"calendar.rebind.example": "127.0.0.1", "intranet.example": "10.0.0.7"})
	for _, u := range []string{
		srv.URL + "/feed.ics?token=s3cr3t",
		"http://localhost:" + port + "/feed.ics?token=s3cr3t",
		"http://[::1]:" + port + "/feed.ics?token=s3cr3t",
		"http://calendar.rebind.example:" + port + "/feed.ics?token=s3cr3t",
		"http://intranet.example/feed.ics?token=s3cr3t",
		"http://192.168.0.1/feed.ics?token=s3cr3t",
		"http://169.254.169.254/latest/meta-data/?token=s3cr3t",
		"file:///etc/passwd?token=s3cr3t",
	} {
		for _, allow := range []bool{false, true} {
			_, err := f.Fetch(context.Background(), FetchRequest{Name: "own", URL: u, PublicOnly: true, AllowPrivate: allow})
			if !errors.Is(err, ErrRefusedAddress) {
				t.Errorf("Fetch(%s, public only, allow_private %v) = %v; want ErrRefusedAddress", u, allow, err)
				continue
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("Fetch(%s) error %q holds the secret", u, err)
			}
		}
	}
	// The same loopback feed, not public-only, is fetched: the refusal
	// above is PublicOnly's.
	if _, err := f.Fetch(context.Background(), FetchRequest{Name: "team", URL: srv.URL + "/feed.ics"}); err != nil {
		t.Errorf("Fetch(%s) = %v; want the feed", srv.URL, err)
	}
	// A redirect from an allowed start to a private address is refused
	// as well; the start here is loopback, so check the policy itself.
	check := redirectPolicy(nil, false, true)
	from, _ := http.NewRequest("GET", "https://calendar.example/feed.ics", nil)
	to, _ := http.NewRequest("GET", "http://10.0.0.7/admin", nil)
	if err := check(to, []*http.Request{from}); !errors.Is(err, ErrRefusedAddress) {
		t.Errorf("redirect to a private address = %v; want ErrRefusedAddress", err)
	}
}
