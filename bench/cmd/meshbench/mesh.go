package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// meshCluster is N mesh peers, each with its own gRPC server on
// 127.0.0.1:0, as a deployment would run them (one per process).
type meshCluster struct {
	period time.Duration
	tr     *tracker
	loss   *loss
	nodes  []*meshNode

	payload    atomic.Int64 // gRPC message bytes, in+out on every server
	wireRead   atomic.Int64 // HTTP/2 bytes read by every server
	wireWrite  atomic.Int64 // HTTP/2 bytes written by every server
	configSeen peer.PeerConfig
}

type meshNode struct {
	p       *peer.Peer
	srv     *grpc.Server
	addr    string
	runDone chan struct{}
	subDone chan struct{}
	sub     *peer.Subscription
	once    sync.Once
	// in and out count its open TCP connections: accepted by its server,
	// and dialled by its transport.
	in, out atomic.Int64
}

// startMesh starts n peers with PingPeriod period and every other field
// at its default.
func startMesh(n int, period time.Duration, tr *tracker, seed uint64) (*meshCluster, error) {
	c := &meshCluster{period: period, tr: tr, loss: newLoss(seed)}
	for range n {
		if err := c.start(); err != nil {
			c.close()
			return nil, err
		}
	}
	c.configSeen = c.nodes[0].p.Config()
	return c, nil
}

func (c *meshCluster) start() error {
	lis, err := listenRetry("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("mesh: listen on 127.0.0.1:0: %w", err)
	}
	addr := lis.Addr().String()
	n := &meshNode{
		srv:     grpc.NewServer(append(peer.ServerOptions(), grpc.StatsHandler(&payloadCounter{n: &c.payload}))...),
		addr:    addr,
		runDone: make(chan struct{}),
		subDone: make(chan struct{}),
	}
	dial := func(ctx context.Context, target string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, err
		}
		return trackOpen(conn, &n.out), nil
	}
	cfg := peer.PeerConfig{
		SelfEndpoint: addr,
		PingPeriod:   c.period,
		DialOptions:  []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial)},
	}
	if err := cfg.Validate(); err != nil {
		lis.Close()
		return fmt.Errorf("mesh: peer config: %w", err)
	}
	cfg.Transport = lossyTransport{Transport: peer.NewTransport(cfg), loss: c.loss}
	n.p = peer.NewPeer(cfg)
	meshpb.RegisterGossipServiceServer(n.srv, n.p)
	c.tr.observe(addr)
	sub := n.p.Subscribe(1 << 14)
	n.sub = sub
	go func() { // exits when the peer stops and closes sub.C
		defer close(n.subDone)
		for ev := range sub.C {
			var k kind
			switch ev.Type {
			case peer.EventJoin:
				k = evJoin
			case peer.EventUpdate:
				k = evUpdate
			case peer.EventFailed:
				k = evFailed
			case peer.EventLeave:
				k = evLeft
			default:
				continue
			}
			c.tr.event(addr, ev.Addr, k, ev.Meta.GetName(), ev.Time)
		}
	}()
	go n.srv.Serve(&countListener{Listener: lis, read: &c.wireRead, written: &c.wireWrite, open: &n.in})
	go func() { n.p.Run(); close(n.runDone) }()
	c.nodes = append(c.nodes, n)
	return nil
}

func (c *meshCluster) ids() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

func (c *meshCluster) joinAll() {
	seed := c.nodes[0].addr
	for _, n := range c.nodes[1:] {
		n.p.AddSeed(seed)
	}
}

func (c *meshCluster) setMeta(i int, meta string) {
	c.nodes[i].p.UpdateMeta(&meshpb.PeerMeta{Name: meta})
}

// crash stops the peer and its server, as a killed process would: no
// goodbye, connections refused from then on.
func (c *meshCluster) crash(i int) { c.nodes[i].stop() }

func (c *meshCluster) leave(i int) {
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), 10*c.period)
	defer cancel()
	_ = n.p.Leave(ctx) // an error only means nobody was told; the timing shows it
	n.stop()
}

func (n *meshNode) stop() {
	n.once.Do(func() {
		n.p.Stop()
		n.srv.Stop()
		<-n.runDone
		<-n.subDone
	})
}

func (c *meshCluster) traffic() traffic {
	return traffic{payload: c.payload.Load(), wire: c.wireRead.Load() + c.wireWrite.Load()}
}

func (c *meshCluster) setLoss(p float64) { c.loss.set(p) }

// conns returns how many TCP connections each running peer has open, in
// both directions.
func (c *meshCluster) conns() []int {
	var out []int
	for _, n := range c.nodes {
		select {
		case <-n.runDone:
		default:
			out = append(out, int(n.in.Load()+n.out.Load()))
		}
	}
	return out
}

// droppedEvents returns how many events the peers' subscriptions dropped
// because the tracker fell behind: the tracker's views miss them, so a
// timeout with drops would be the bench's, not the peers'.
func (c *meshCluster) droppedEvents() uint64 {
	var d uint64
	for _, n := range c.nodes {
		d += n.sub.Dropped()
	}
	return d
}

func (c *meshCluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop() }()
	}
	wg.Wait()
}

// payloadCounter is a server stats.Handler adding the wire length of every
// gRPC message received and sent (protobuf plus the 5-byte prefix). On the
// server side it sees each exchange once: requests in, answers out.
type payloadCounter struct{ n *atomic.Int64 }

func (p *payloadCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (p *payloadCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (p *payloadCounter) HandleConn(context.Context, stats.ConnStats) {}
func (p *payloadCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.InPayload:
		p.n.Add(int64(s.WireLength))
	case *stats.OutPayload:
		p.n.Add(int64(s.WireLength))
	}
}

// lossyTransport is the library's default transport (peer.NewTransport)
// with loss injection: each Sync request and each answer is dropped with
// the cluster's loss probability. A dropped message looks as it would on
// a network: the call waits for its deadline and fails. So one call fails
// with probability 1-(1-p)², as one memberlist ping/ack does.
type lossyTransport struct {
	peer.Transport
	loss *loss
}

var (
	_ peer.Transport = lossyTransport{}
	_ peer.Connector = lossyTransport{}
)

func (t lossyTransport) Sync(ctx context.Context, addr string, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	if t.loss.drop() {
		<-ctx.Done()
		return nil, fmt.Errorf("sync with %s: request dropped by injected loss: %w", addr, ctx.Err())
	}
	resp, err := t.Transport.Sync(ctx, addr, req)
	if err == nil && t.loss.drop() {
		<-ctx.Done()
		return nil, fmt.Errorf("sync with %s: answer dropped by injected loss: %w", addr, ctx.Err())
	}
	return resp, err
}

// Connect gives the connection its own deadline before the call's, as the
// default transport does.
func (t lossyTransport) Connect(ctx context.Context, addr string) error {
	return t.Transport.(peer.Connector).Connect(ctx, addr)
}
