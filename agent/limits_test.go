package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/meshtls"
	"github.com/gossipmesh/mesh/meshtls/meshtlstest"
	"github.com/gossipmesh/mesh/peer"
)

// Each limit refuses a message over it with a clear error to the sender,
// through the agent's real gRPC server, and leaves the agent's state as it
// was.
func TestLimitsRefuseOverGRPC(t *testing.T) {
	a := start(t, Config{Name: "a", MaxMsgBytes: 256 << 10})
	b := start(t, Config{Name: "b", Join: []string{a.a.Addr()}})
	await(t, "2 agents converge", sees([]*running{a, b}, addrsOf(a, b)))
	gossip := meshpb.NewGossipServiceClient(dial(t, a.a.Addr()))

	alive := func(i int) *meshpb.Entry {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+i)
		return &meshpb.Entry{Addr: addr, Time: uint64(i + 1), Writer: addr + "#1"}
	}
	many := func(n int) []*meshpb.Entry {
		var out []*meshpb.Entry
		for i := range n {
			out = append(out, alive(i))
		}
		return out
	}
	longHost := strings.Repeat("h", 300) + ":1"
	for _, tc := range []struct {
		name string
		req  *meshpb.SyncRequest
		code codes.Code
		want string
	}{
		{"message above MaxMsgBytes", &meshpb.SyncRequest{Digest: 1, Holders: make([]byte, 300<<10)},
			codes.ResourceExhausted, "received message larger than max"},
		{"delta above MaxDeltaEntries", &meshpb.SyncRequest{Full: true, Delta: many(1025)},
			codes.ResourceExhausted, "delta of 1025 entries, above MaxDeltaEntries (1024)"},
		{"meta above MaxMetaBytes", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{{Addr: "127.0.0.1:9", Time: 1, Writer: "127.0.0.1:9#1",
			Meta: &meshpb.PeerMeta{Name: strings.Repeat("x", 17<<10)}}}}, codes.InvalidArgument, "above MaxMetaBytes (16384)"},
		{"address above MaxAddrBytes", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{{Addr: longHost, Time: 1, Writer: longHost + "#1"}}},
			codes.InvalidArgument, "above MaxAddrBytes (261)"},
		{"credentials above MaxCredentialBytes", &meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{{Addr: "127.0.0.1:9", Time: 1, Writer: "127.0.0.1:9#1",
			Cert: make([]byte, 17<<10)}}}, codes.InvalidArgument, "above MaxCredentialBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := viewOf(a)
			_, err := gossip.Sync(ctxT(t), tc.req)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sync = %v, want %v containing %q", err, tc.code, tc.want)
			}
			if got := viewOf(a); got != before {
				t.Fatalf("state changed:\n before %s\n after  %s", before, got)
			}
		})
	}
}

// fakeGossip answers every Sync with a fixed response.
type fakeGossip struct {
	meshpb.UnimplementedGossipServiceServer
	resp *meshpb.SyncResponse
}

func (f *fakeGossip) Sync(context.Context, *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	return f.resp, nil
}

// The agent's own calls refuse answers above MaxMsgBytes too: a partner
// cannot make it allocate more.
func TestMaxMsgBytesBoundsAnswers(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := &meshpb.SyncResponse{Holders: make([]byte, 300<<10)}
	srv := grpc.NewServer()
	meshpb.RegisterGossipServiceServer(srv, &fakeGossip{resp: big})
	go srv.Serve(lis)
	defer srv.Stop()

	a := start(t, Config{Name: "a", MaxMsgBytes: 256 << 10, Join: []string{lis.Addr().String()}})
	before := viewOf(a)
	await(t, "3 calls to the oversized partner fail", func() (bool, string) {
		st := a.a.Peer().Stats()
		return st.SyncErrors >= 3, fmt.Sprintf("%+v", st)
	})
	if got := viewOf(a); got != before {
		t.Fatalf("state changed:\n before %s\n after  %s", before, got)
	}
}

// A client that pings more than the enforcement policy allows is sent
// GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and cut off; the agent goes
// on serving.
func TestKeepaliveEnforcement(t *testing.T) {
	a := start(t, Config{Name: "a"})
	conn, err := net.DialTimeout("tcp", a.a.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(tlsWait))
	frame := func(typ byte, payload []byte) []byte {
		h := make([]byte, 9, 9+len(payload))
		h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		h[3] = typ
		return append(h, payload...)
	}
	out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out = append(out, frame(0x4, nil)...) // SETTINGS
	for i := range 10 {
		out = append(out, frame(0x6, binary.BigEndian.AppendUint64(nil, uint64(i)))...) // PING
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	for {
		var h [9]byte
		if _, err := io.ReadFull(conn, h[:]); err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		payload := make([]byte, int(h[0])<<16|int(h[1])<<8|int(h[2]))
		if _, err := io.ReadFull(conn, payload); err != nil {
			t.Fatal(err)
		}
		if h[3] == 0x7 { // GOAWAY: last stream id, error code, debug data
			code, debug := binary.BigEndian.Uint32(payload[4:8]), string(payload[8:])
			if code != 0xb || debug != "too_many_pings" {
				t.Fatalf("GOAWAY code %#x %q, want ENHANCE_YOUR_CALM (0xb) too_many_pings", code, debug)
			}
			break
		}
	}
	if _, err := healthpb.NewHealthClient(dial(t, a.a.Addr())).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("agent no longer serves after the GOAWAY: %v", err)
	}
}

// Garbage on the port (random bytes, an HTTP/2 preface followed by junk,
// an HTTP/1 request) is dropped, with TLS and without; the agent keeps
// serving and its cluster is unchanged.
func TestGarbageOnThePort(t *testing.T) {
	ca := meshtlstest.NewCA(t, "ca")
	cfg, _ := tlsFiles(t, ca, "127.0.0.1")
	tlsAgent := start(t, cfg)
	client, err := meshtls.New(ca.Issue(t, meshtlstest.Spec{Hosts: []string{"127.0.0.1"}}).TLS, meshtlstest.Pool(ca))
	if err != nil {
		t.Fatal(err)
	}
	plain := start(t, Config{Name: "plain"})
	peerOf := start(t, Config{Name: "partner", Join: []string{plain.a.Addr()}})
	await(t, "plain agents converge", sees([]*running{plain, peerOf}, addrsOf(plain, peerOf)))

	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 64<<10)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	inputs := map[string][]byte{
		"random bytes":           noise,
		"preface then junk":      append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), noise[:4096]...),
		"HTTP/1 request":         []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"TLS record header only": {0x16, 0x03, 0x01, 0xff, 0xff},
	}
	for _, tc := range []struct {
		name  string
		r     *running
		creds grpc.DialOption
	}{
		{"plaintext", plain, grpc.WithTransportCredentials(insecure.NewCredentials())},
		{"TLS", tlsAgent, client.DialOption()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := viewOf(tc.r)
			for what, data := range inputs {
				conn, err := net.DialTimeout("tcp", tc.r.a.Addr(), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				conn.SetDeadline(time.Now().Add(tlsWait))
				conn.Write(data) // may fail once the server hangs up
				if what != "TLS record header only" {
					// The server must hang up by itself (a TLS record
					// header waits for its body: the handshake timeout).
					if _, err := io.Copy(io.Discard, conn); err != nil && !isReset(err) {
						t.Errorf("%s: server did not hang up: %v", what, err)
					}
				}
				conn.Close()
			}
			conn := tlsDial(t, tc.r.a.Addr(), tc.creds)
			if _, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("agent no longer serves after garbage: %v", err)
			}
			if got := viewOf(tc.r); got != before {
				t.Fatalf("state changed:\n before %s\n after  %s", before, got)
			}
		})
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || bytes.Contains([]byte(err.Error()), []byte("broken pipe"))
}

// The agent's peer has the documented limits in effect.
func TestAgentLimitDefaults(t *testing.T) {
	a, err := New(Config{Bind: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c := a.Peer().Config()
	if c.MaxMembers != peer.DefaultMaxMembers || c.MaxDeltaEntries != 1024 || c.MaxMetaBytes != 16<<10 || c.RPCTimeout != c.PingPeriod {
		t.Fatalf("limits %d members, %d entries, %d meta bytes, RPC timeout %v", c.MaxMembers, c.MaxDeltaEntries, c.MaxMetaBytes, c.RPCTimeout)
	}
	if got := c.MaxMessageBytes(); got < c.MaxDeltaEntries*c.MaxMetaBytes || got > 64<<20 {
		t.Fatalf("MaxMessageBytes = %d, want between a delta of full metas and 64 MiB", got)
	}
	t.Logf("default MaxMessageBytes = %d (%.1f MiB)", c.MaxMessageBytes(), float64(c.MaxMessageBytes())/(1<<20))
}
