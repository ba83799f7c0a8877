package cable

import (
	"strings"
	"testing"
	"time"
)

// TestParseSocketEnd: every spec form of the brief parses to the mode,
// network and addresses it names, empty hosts become 127.0.0.1, and
// String gives back a spec that parses to the same thing.
func TestParseSocketEnd(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		mode    SocketMode
		network string
		addr    string
		remote  string
	}{
		{"stream-listen:unix:/tmp/a.sock", StreamListen, "unix", "/tmp/a.sock", ""},
		{"stream-listen:unix:/tmp/with:colon.sock", StreamListen, "unix", "/tmp/with:colon.sock", ""},
		{"stream-listen:unix:@abstract", StreamListen, "unix", "@abstract", ""},
		{"stream-listen:tcp:0.0.0.0:5555", StreamListen, "tcp", "0.0.0.0:5555", ""},
		{"stream-listen:tcp::5555", StreamListen, "tcp", "127.0.0.1:5555", ""},
		{"stream-listen:tcp:127.0.0.1:0", StreamListen, "tcp", "127.0.0.1:0", ""},
		{"stream-listen:tcp:[::1]:5555", StreamListen, "tcp", "[::1]:5555", ""},
		{"stream-connect:unix:/run/x.sock", StreamConnect, "unix", "/run/x.sock", ""},
		{"stream-connect:tcp:peer.example:5555", StreamConnect, "tcp", "peer.example:5555", ""},
		{"stream-connect:tcp::5555", StreamConnect, "tcp", "127.0.0.1:5555", ""},
		{"dgram:udp:127.0.0.1:5555:127.0.0.1:5556", Dgram, "udp", "127.0.0.1:5555", "127.0.0.1:5556"},
		{"dgram:udp::0:10.0.0.2:5556", Dgram, "udp", "127.0.0.1:0", "10.0.0.2:5556"},
		{"dgram:udp:[::1]:5555:[fe80::1]:5556", Dgram, "udp", "[::1]:5555", "[fe80::1]:5556"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			cfg, err := ParseSocketEnd(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Mode != tc.mode || cfg.Network != tc.network || cfg.Address != tc.addr || cfg.Remote != tc.remote {
				t.Fatalf("got %v %q %q %q, want %v %q %q %q", cfg.Mode, cfg.Network, cfg.Address, cfg.Remote,
					tc.mode, tc.network, tc.addr, tc.remote)
			}
			again, err := ParseSocketEnd(cfg.String())
			if err != nil || again != cfg {
				t.Fatalf("String %q parses to %+v, %v; want %+v", cfg.String(), again, err, cfg)
			}
		})
	}
}

// TestParseSocketEndErrors: bad specs get an error that starts with the
// package name, quotes the spec and says what is wrong.
func TestParseSocketEndErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"", "want MODE:NETWORK:ADDRESS"},
		{"stream-listen", "want MODE:NETWORK:ADDRESS"},
		{"stream:tcp:1.2.3.4:5", `unknown mode "stream"`},
		{"stream-listen:tcp", "want stream-listen:NETWORK:ADDRESS"},
		{"stream-listen:udp:1.2.3.4:5", `stream network "udp"`},
		{"stream-listen:unix:", "empty unix socket path"},
		{"stream-listen:tcp:1.2.3.4", "want HOST:PORT"},
		{"stream-listen:tcp:1.2.3.4:http", `port "http"`},
		{"stream-listen:tcp:1.2.3.4:65536", `port "65536"`},
		{"stream-connect:tcp:1.2.3.4:0", "port 0"},
		{"dgram:unix:/a:/b", `dgram network "unix"`},
		{"dgram:udp:1.2.3.4:5", "want HOST:PORT:REMOTEHOST:REMOTEPORT"},
		{"dgram:udp:1.2.3.4:5:6.7.8.9", "remote address"},
		{"dgram:udp:1.2.3.4:5:6.7.8.9:0", "port 0"},
		{"dgram:udp:[::1:5:6.7.8.9:1", "missing ']'"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			_, err := ParseSocketEnd(tc.spec)
			if err == nil {
				t.Fatal("parsed")
			}
			prefix := `cable: socket end "` + tc.spec + `": `
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want prefix %q and %q", err, prefix, tc.want)
			}
		})
	}
}

// TestSocketEndDefaults: zero fields take the documented defaults and
// ReconnectMax is never below ReconnectMin.
func TestSocketEndDefaults(t *testing.T) {
	var c SocketEndConfig
	c.setDefaults()
	want := SocketEndConfig{Queue: DefaultSocketQueue, MaxFrame: DefaultSocketMaxFrame,
		LinkBitsPerSec: DefaultLinkBitsPerSec, WriteTimeout: DefaultSocketWriteTimeout,
		DialTimeout: DefaultSocketDialTimeout, ReconnectMin: DefaultReconnectMin, ReconnectMax: DefaultReconnectMax}
	if c != want {
		t.Fatalf("defaults %+v, want %+v", c, want)
	}
	c = SocketEndConfig{ReconnectMin: time.Minute, ReconnectMax: time.Second}
	c.setDefaults()
	if c.ReconnectMax != time.Minute {
		t.Fatalf("ReconnectMax %v, want raised to ReconnectMin", c.ReconnectMax)
	}
}

// TestNextBackoff: the redial wait starts at the minimum, doubles, and
// stays at the maximum.
func TestNextBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 700*time.Millisecond
	var got []time.Duration
	var d time.Duration
	for range 6 {
		d = nextBackoff(d, lo, hi)
		got = append(got, d)
	}
	want := []time.Duration{100, 200, 400, 700, 700, 700}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff sequence %v, want %v ms", got, want)
		}
	}
}
