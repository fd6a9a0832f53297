package sim

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
)

// msgSize must agree with the encoder on every message, including shapes
// the scenarios never send (several tags, empty tags, credentials).
func TestMsgSizeMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string { return strings.Repeat("x", r.IntN(3)*r.IntN(200)) }
	u := func() uint64 { return []uint64{0, 1, 127, 128, 1 << 40, 1<<64 - 1}[r.IntN(6)] }
	entries := func() []*meshpb.Entry {
		var es []*meshpb.Entry
		for range r.IntN(4) {
			e := &meshpb.Entry{Addr: str(), Time: u(), Writer: str(), State: meshpb.State(r.IntN(3)),
				Cert: []byte(str()), Sig: []byte(str())}
			if r.IntN(3) > 0 {
				e.Meta = &meshpb.PeerMeta{Name: str()}
				if r.IntN(2) == 0 {
					e.Meta.Tags = map[string]string{}
					for range r.IntN(4) {
						e.Meta.Tags[str()] = str()
					}
				}
			}
			es = append(es, e)
		}
		return es
	}
	version := func() []*meshpb.WriterTime {
		var v []*meshpb.WriterTime
		for range r.IntN(4) {
			v = append(v, &meshpb.WriterTime{Writer: str(), Time: u()})
		}
		return v
	}
	for i := range 2000 {
		req := &meshpb.SyncRequest{Cluster: str(), From: str(), Digest: u(), Full: r.IntN(2) == 0,
			Version: version(), Delta: entries(), Clock: u(), Cut: u(), Push: r.IntN(2) == 0,
			Probe: r.IntN(2) == 0, Holders: []byte(str()), AllHold: r.IntN(2) == 0}
		resp := &meshpb.SyncResponse{Digest: u(), Version: version(), Delta: entries(), Clock: u(), Floor: u(), Cut: u(),
			Heartbeat: u(), Code: uint32(u()), Error: str(), Holders: []byte(str()), AllHold: r.IntN(2) == 0}
		for _, m := range []proto.Message{req, resp} {
			if got, want := msgSize(m), proto.Size(m); got != want {
				t.Fatalf("message %d: msgSize %d, proto.Size %d: %v", i, got, want, m)
			}
		}
	}
}

// The two Wire modes give the same run: same bytes, same events, same
// trace digest. WireShared is then as faithful as WireCopy, apart from
// catching a machine that changes what it sent or received.
func TestWireModesAgree(t *testing.T) {
	run := func(w Wire) (uint64, Stats) {
		s := New(Config{Seed: 5, Wire: w, Loss: 0.05, AllowFalseRemovals: true})
		startCluster(s, 24)
		s.Run(10 * time.Second)
		live := s.Live()
		s.Crash(live[3])
		s.Leave(live[4])
		s.SetMeta(live[5])
		s.Partition(live[:12], live[12:])
		s.Run(20 * time.Second)
		s.Heal()
		s.Restart(live[3])
		s.Restart(live[4])
		s.Run(30 * time.Second)
		return s.TraceDigest(), s.Stats()
	}
	a, sa := run(WireCopy)
	b, sb := run(WireShared)
	if a != b || sa != sb {
		t.Fatalf("copy: %016x %+v\nshared: %016x %+v", a, sa, b, sb)
	}
	t.Logf("both modes: %016x, %d messages, %d bytes", a, sa.Messages, sa.Bytes)
}
