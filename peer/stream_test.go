package peer

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
)

// rpcCounter counts the RPCs a server began and ended, by method.
type rpcCounter struct {
	mu           sync.Mutex
	began, ended map[string]int
	from         []string // "From Cluster" of each request as it came over the wire
}

type methodKey struct{}

func (c *rpcCounter) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

func (c *rpcCounter) HandleRPC(ctx context.Context, s stats.RPCStats) {
	m, _ := ctx.Value(methodKey{}).(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s := s.(type) {
	case *stats.Begin:
		c.began[m]++
	case *stats.End:
		c.ended[m]++
	case *stats.InPayload:
		if req, ok := s.Payload.(*meshpb.SyncRequest); ok {
			c.from = append(c.from, req.GetFrom()+" "+req.GetCluster())
		}
	}
}

func (c *rpcCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *rpcCounter) HandleConn(context.Context, stats.ConnStats)                       {}

func (c *rpcCounter) counts(method string) (began, ended int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.began["/mesh.v1.GossipService/"+method], c.ended["/mesh.v1.GossipService/"+method]
}

// serve serves srv on a fresh loopback port until the test ends.
func serve(t *testing.T, srv meshpb.GossipServiceServer) (addr string, rpcs *rpcCounter) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rpcs = &rpcCounter{began: map[string]int{}, ended: map[string]int{}}
	s := grpc.NewServer(append(ServerOptions(), grpc.StatsHandler(rpcs))...)
	meshpb.RegisterGossipServiceServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String(), rpcs
}

func testTransport(t *testing.T) *grpcTransport {
	tr := newGRPCTransport(sanitize(PeerConfig{SelfEndpoint: "127.0.0.1:1", PingPeriod: 50 * time.Millisecond}).withDefaults())
	t.Cleanup(func() { tr.Close() })
	return tr
}

func probe() *meshpb.SyncRequest { return &meshpb.SyncRequest{From: "127.0.0.1:1", Probe: true} }

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Every call to a partner, concurrent or not, goes over one stream, and
// each caller gets the answer to its own request.
func TestStreamCarriesEveryCall(t *testing.T) {
	addr, rpcs := serve(t, NewPeer(PeerConfig{SelfEndpoint: "127.0.0.1:2", PingPeriod: 50 * time.Millisecond}))
	tr := testTransport(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := probe()
			if i%2 == 1 { // a digest request: its answer carries a digest, a probe's does not
				req = &meshpb.SyncRequest{From: "127.0.0.1:1", Digest: 1}
			}
			resp, err := tr.Sync(within(t, 5*time.Second), addr, req)
			switch {
			case err != nil:
				errs <- err
			case (resp.GetDigest() != 0) != (i%2 == 1):
				errs <- errors.New("an answer went to the wrong call")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if began, _ := rpcs.counts("Gossip"); began != 1 {
		t.Errorf("Gossip streams opened: %d, want 1", began)
	}
	if began, _ := rpcs.counts("Sync"); began != 0 {
		t.Errorf("Sync calls: %d, want 0", began)
	}
}

// A refused request comes back as the error Sync would return, and the
// stream carries on.
func TestStreamRefusalKeepsTheStream(t *testing.T) {
	addr, rpcs := serve(t, NewPeer(PeerConfig{SelfEndpoint: "127.0.0.1:2", PingPeriod: 50 * time.Millisecond, ClusterName: "a"}))
	tr := testTransport(t)
	_, err := tr.Sync(within(t, 5*time.Second), addr, &meshpb.SyncRequest{Cluster: "b", From: "127.0.0.1:1", Probe: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("request of another cluster: %v, want FailedPrecondition", err)
	}
	if _, err := tr.Sync(within(t, 5*time.Second), addr, &meshpb.SyncRequest{Cluster: "a", From: "127.0.0.1:1", Probe: true}); err != nil {
		t.Fatalf("next request: %v", err)
	}
	if began, _ := rpcs.counts("Gossip"); began != 1 {
		t.Errorf("Gossip streams opened: %d, want 1", began)
	}
}

// A stopped Peer on a live server and a closed port are both refusals,
// which an observer alerts on at once.
func TestStreamRefusalsAreRecognised(t *testing.T) {
	p := NewPeer(PeerConfig{SelfEndpoint: "127.0.0.1:2", PingPeriod: 50 * time.Millisecond})
	addr, _ := serve(t, p)
	tr := testTransport(t)
	if _, err := tr.Sync(within(t, 5*time.Second), addr, probe()); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if _, err := tr.Sync(within(t, 5*time.Second), addr, probe()); !refusal(err) {
		t.Errorf("stopped peer: %v, want a refusal", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	if _, err := tr.Sync(within(t, 5*time.Second), closed, probe()); !refusal(err) {
		t.Errorf("closed port: %v, want a refusal", err)
	}
}

// syncOnly is a partner that implements Sync but not Gossip.
type syncOnly struct {
	meshpb.UnimplementedGossipServiceServer
	calls atomic.Int64
}

func (s *syncOnly) Sync(context.Context, *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	return &meshpb.SyncResponse{Heartbeat: uint64(s.calls.Add(1))}, nil
}

// A partner without Gossip is called with Sync.
func TestStreamFallsBackToSync(t *testing.T) {
	srv := &syncOnly{}
	addr, rpcs := serve(t, srv)
	tr := testTransport(t)
	for i := range 3 {
		resp, err := tr.Sync(within(t, 5*time.Second), addr, probe())
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.GetHeartbeat() != uint64(i+1) {
			t.Fatalf("call %d answered %d", i, resp.GetHeartbeat())
		}
	}
	if began, _ := rpcs.counts("Gossip"); began != 1 {
		t.Errorf("Gossip streams tried: %d, want 1", began)
	}
}

// mute reads a stream's requests and answers none: a wedged partner.
type mute struct {
	meshpb.UnimplementedGossipServiceServer
}

func (mute) Gossip(s meshpb.GossipService_GossipServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			return nil
		}
	}
}

// A call that gets nothing back on its stream fails at its deadline and
// resets the stream; the next call opens another.
func TestStreamThatStallsIsReset(t *testing.T) {
	addr, rpcs := serve(t, mute{})
	tr := testTransport(t)
	for i := range 2 {
		if _, err := tr.Sync(within(t, 100*time.Millisecond), addr, probe()); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d: %v, want DeadlineExceeded", i, err)
		}
	}
	waitUntil(t, func() bool { began, ended := rpcs.counts("Gossip"); return began == 2 && ended >= 1 })
}

// A stream unused for MaxRetryInterval/2 closes, so that its connection can
// go idle and close too.
func TestIdleStreamCloses(t *testing.T) {
	addr, rpcs := serve(t, NewPeer(PeerConfig{SelfEndpoint: "127.0.0.1:2", PingPeriod: 50 * time.Millisecond}))
	tr := newGRPCTransport(sanitize(PeerConfig{SelfEndpoint: "127.0.0.1:1", PingPeriod: 50 * time.Millisecond, MaxRetryInterval: 200 * time.Millisecond}).withDefaults())
	defer tr.Close()
	if _, err := tr.Sync(within(t, 5*time.Second), addr, probe()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { _, ended := rpcs.counts("Gossip"); return ended == 1 })
	if _, err := tr.Sync(within(t, 5*time.Second), addr, probe()); err != nil {
		t.Fatalf("call after the idle close: %v", err)
	}
	if began, _ := rpcs.counts("Gossip"); began != 2 {
		t.Errorf("Gossip streams opened: %d, want 2", began)
	}
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
	}
}

// recorder answers a stream as a Peer does, recording the From and
// Cluster its handler sees.
type recorder struct {
	meshpb.UnimplementedGossipServiceServer
	mu   sync.Mutex
	seen []string
}

func (r *recorder) Gossip(s meshpb.GossipService_GossipServer) error {
	return serveStream(s, func(_ context.Context, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.seen = append(r.seen, req.GetFrom()+" "+req.GetCluster())
		return &meshpb.SyncResponse{}, nil
	})
}

// A stream names its requester and cluster once: probes and digest
// requests go without them, and the handler sees them all the same.
func TestStreamNamesTheRequesterOnce(t *testing.T) {
	rec := &recorder{}
	addr, rpcs := serve(t, rec)
	tr := newGRPCTransport(sanitize(PeerConfig{SelfEndpoint: "127.0.0.1:1", PingPeriod: 50 * time.Millisecond, ClusterName: "c"}).withDefaults())
	defer tr.Close()
	reqs := []*meshpb.SyncRequest{
		{From: "127.0.0.1:1", Cluster: "c", Probe: true},
		{From: "127.0.0.1:1", Cluster: "c", Digest: 7, Holders: []byte{3}},
		{From: "127.0.0.1:1", Cluster: "c", Push: true, Delta: []*meshpb.Entry{{Addr: "127.0.0.1:1"}}},
		{From: "127.0.0.1:9", Cluster: "d", Probe: true},
	}
	for _, req := range reqs {
		if _, err := tr.Sync(within(t, 5*time.Second), addr, req); err != nil {
			t.Fatal(err)
		}
	}
	rpcs.mu.Lock()
	wire := slices.Clone(rpcs.from)
	rpcs.mu.Unlock()
	if want := []string{" ", " ", "127.0.0.1:1 c", "127.0.0.1:9 d"}; !slices.Equal(wire, want) {
		t.Errorf("From and Cluster on the wire: %q, want %q", wire, want)
	}
	rec.mu.Lock()
	seen := slices.Clone(rec.seen)
	rec.mu.Unlock()
	if want := []string{"127.0.0.1:1 c", "127.0.0.1:1 c", "127.0.0.1:1 c", "127.0.0.1:9 d"}; !slices.Equal(seen, want) {
		t.Errorf("From and Cluster the handler saw: %q, want %q", seen, want)
	}
	if reqs[0].GetFrom() != "127.0.0.1:1" || reqs[0].GetCluster() != "c" {
		t.Error("the caller's request was changed")
	}
}
