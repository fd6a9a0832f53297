package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
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
	maxConns   int
	configSeen peer.PeerConfig
	dialOpts   []grpc.DialOption // every peer's, see newGRPCTransport
}

type meshNode struct {
	p       *peer.Peer
	srv     *grpc.Server
	addr    string
	runDone chan struct{}
	subDone chan struct{}
	sub     *peer.Subscription
	once    sync.Once
}

// startMesh starts n peers with PingPeriod period and every other field
// at its default. maxConns caps each peer's cached client connections
// (see grpcTransport).
func startMesh(n int, period time.Duration, tr *tracker, seed uint64, maxConns int) (*meshCluster, error) {
	c := &meshCluster{period: period, tr: tr, loss: newLoss(seed), maxConns: maxConns}
	// The timings the library's default transport derives its dial options
	// from, with the defaults filled in (the peer is never run).
	d := peer.NewPeer(peer.PeerConfig{SelfEndpoint: "127.0.0.1:1", PingPeriod: period}).Config()
	c.dialOpts = dialOptions(d)
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
	cfg := peer.PeerConfig{
		SelfEndpoint: addr,
		PingPeriod:   c.period,
		Transport:    newGRPCTransport(c.loss, c.maxConns, c.dialOpts),
	}
	if err := cfg.Validate(); err != nil {
		lis.Close()
		return fmt.Errorf("mesh: peer config: %w", err)
	}
	n := &meshNode{
		p:       peer.NewPeer(cfg),
		srv:     grpc.NewServer(grpc.StatsHandler(&payloadCounter{n: &c.payload})),
		addr:    addr,
		runDone: make(chan struct{}),
		subDone: make(chan struct{}),
	}
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
	go n.srv.Serve(&countListener{Listener: lis, read: &c.wireRead, written: &c.wireWrite})
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

// grpcTransport is a peer.Transport like the library's default (unexported)
// one: one lazily dialled *grpc.ClientConn per partner address, reused
// across rounds, closed by Forget in the background, connected ahead of
// a call by Connect (peer.WaitReady). It adds two things the benchmark needs:
//
//   - loss injection: each Sync request and each answer is dropped with
//     the cluster's loss probability. A dropped message looks as it would
//     on a network: the call waits for its deadline and fails. So one call
//     fails with probability 1-(1-p)², as one memberlist ping/ack does.
//   - a cap on cached connections. All N peers share this process and its
//     file-descriptor limit, and every connection costs two descriptors
//     (client and server end), so N peers that each keep a connection to
//     all N-1 others need 2N(N-1): 32,512 at N=128, above the usual
//     20,000. Above maxConns the least recently used idle connection is
//     closed (never one with a call in flight). A peer that redials pays a
//     TCP and HTTP/2 handshake, counted in wire bytes, never in payload.
//     With maxConns ≥ N-1 the transport behaves exactly like the default.
type grpcTransport struct {
	loss     *loss
	maxConns int
	opts     []grpc.DialOption

	mu      sync.Mutex
	conns   map[string]*cachedConn
	closed  bool
	closing sync.WaitGroup // Forget closes in the background, as the default does
}

type cachedConn struct {
	cc       *grpc.ClientConn
	inFlight int
	lastUse  time.Time
}

var (
	_ peer.Transport = (*grpcTransport)(nil)
	_ peer.Connector = (*grpcTransport)(nil)
)

func newGRPCTransport(l *loss, maxConns int, opts []grpc.DialOption) *grpcTransport {
	return &grpcTransport{loss: l, maxConns: maxConns, opts: opts, conns: map[string]*cachedConn{}}
}

// dialOptions returns the options the library's default transport dials
// with (peer/grpc.go, newGRPCTransport): a reconnect backoff from half the
// period up to MaxRetryInterval and DialTimeout per attempt, instead of
// gRPC's defaults (1 s growing to 120 s, 20 s per attempt). With gRPC's,
// one refused or reset connection would leave the partner unreachable for
// ten periods or more, which the library's own transport does not do.
func dialOptions(c peer.PeerConfig) []grpc.DialOption {
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = min(c.PingPeriod, c.RPCTimeout)/2, c.MaxRetryInterval
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: c.DialTimeout}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
}

// acquire returns the connection to addr, dialling it if needed, and marks
// a call in flight on it; release must follow.
func (t *grpcTransport) acquire(addr string) (*cachedConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("dial %s: transport closed", addr)
	}
	c := t.conns[addr]
	if c == nil {
		if t.maxConns > 0 && len(t.conns) >= t.maxConns {
			t.evictLocked()
		}
		cc, err := grpc.NewClient(addr, t.opts...)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		c = &cachedConn{cc: cc}
		t.conns[addr] = c
	}
	c.inFlight++
	c.lastUse = time.Now()
	return c, nil
}

func (t *grpcTransport) release(c *cachedConn) {
	t.mu.Lock()
	c.inFlight--
	t.mu.Unlock()
}

// evictLocked closes the least recently used connection with no call in
// flight, if there is one.
func (t *grpcTransport) evictLocked() {
	var oldAddr string
	var old *cachedConn
	for a, c := range t.conns {
		if c.inFlight == 0 && (old == nil || c.lastUse.Before(old.lastUse)) {
			oldAddr, old = a, c
		}
	}
	if old != nil {
		delete(t.conns, oldAddr)
		go old.cc.Close() // Close waits for the connection to wind down
	}
}

func (t *grpcTransport) Sync(ctx context.Context, addr string, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	if t.loss.drop() {
		<-ctx.Done()
		return nil, fmt.Errorf("sync with %s: request dropped by injected loss: %w", addr, ctx.Err())
	}
	c, err := t.acquire(addr)
	if err != nil {
		return nil, err
	}
	resp, err := meshpb.NewGossipServiceClient(c.cc).Sync(ctx, req)
	t.release(c)

	if err == nil && t.loss.drop() {
		<-ctx.Done()
		return nil, fmt.Errorf("sync with %s: answer dropped by injected loss: %w", addr, ctx.Err())
	}
	return resp, err
}

// Connect gives the connection its own deadline before the call's, as the
// default transport does (peer.DialTimeout).
func (t *grpcTransport) Connect(ctx context.Context, addr string) error {
	c, err := t.acquire(addr)
	if err != nil {
		return err
	}
	defer t.release(c)
	return peer.WaitReady(ctx, c.cc)
}

func (t *grpcTransport) Forget(addr string) {
	t.mu.Lock()
	c := t.conns[addr]
	delete(t.conns, addr)
	if c != nil {
		t.closing.Add(1)
		go func() { // Close can block while calls drain; Forget must not
			defer t.closing.Done()
			c.cc.Close()
		}()
	}
	t.mu.Unlock()
}

func (t *grpcTransport) Close() error {
	t.mu.Lock()
	conns := t.conns
	t.conns, t.closed = map[string]*cachedConn{}, true
	t.mu.Unlock()
	for _, c := range conns {
		c.cc.Close()
	}
	t.closing.Wait()
	return nil
}
