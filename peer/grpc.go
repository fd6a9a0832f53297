package peer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
)

// grpcTransport is the default Transport: one lazily connected
// *grpc.ClientConn per peer address, reused across rounds, and on it one
// long-lived Gossip stream that carries every call; Sync only for a
// partner that does not implement Gossip.
type grpcTransport struct {
	opts    []grpc.DialOption
	self    string // the requester and its cluster, named once per stream
	cluster string
	idle    time.Duration // a stream unused this long is closed, then its connection
	maxAge  time.Duration // a stream this old takes no new calls
	ctx     context.Context
	cancel  context.CancelFunc // ends every stream

	mu       sync.Mutex
	partners map[string]*partner
	closed   bool
	streams  sync.WaitGroup // receive loops
	// closing tracks connections being closed in the background: Close
	// can block while calls drain, and Forget is called from the protocol
	// paths, which must not stall. Close waits for them.
	closing sync.WaitGroup
}

// partner is the connection to one address and the stream on it.
type partner struct {
	cc      *grpc.ClientConn
	opening chan struct{} // held by the one caller that may open a stream

	mu    sync.Mutex
	cur   *gossipStream
	unary bool // the partner answered Gossip with Unimplemented
}

var (
	_ Transport = (*grpcTransport)(nil)
	_ Connector = (*grpcTransport)(nil)
)

// NewTransport returns the Transport a Peer uses when PeerConfig.Transport
// is nil, so that it can be wrapped (fault injection, metrics) and the
// wrapper given as PeerConfig.Transport. It is also a Connector; a wrapper
// that implements Connector too keeps dials out of the calls' deadlines.
func NewTransport(cfg PeerConfig) Transport {
	return newGRPCTransport(sanitize(cfg).withDefaults())
}

// newGRPCTransport dials with opts, after a reconnect backoff scaled to
// the period (opts may override it) rather than gRPC's second and more:
// see WaitReady.
func newGRPCTransport(cfg PeerConfig) *grpcTransport {
	opts := cfg.DialOptions
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = min(cfg.PingPeriod, cfg.RPCTimeout)/2, cfg.MaxRetryInterval
	// A stream unused for half of MaxRetryInterval closes, and its
	// connection after as long again: the overlay changes a peer's
	// partners now and then, and a connection to a former one would
	// otherwise stay open for good.
	idle := cfg.MaxRetryInterval / 2
	opts = append(append([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: cfg.DialTimeout}),
		grpc.WithIdleTimeout(idle)}, dialWindows()...), opts...)
	t := &grpcTransport{opts: opts, self: cfg.SelfEndpoint, cluster: cfg.ClusterName, idle: idle, maxAge: 20 * cfg.MaxRetryInterval, partners: map[string]*partner{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

func (t *grpcTransport) partner(addr string) (*partner, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("dial %s: transport closed", addr)
	}
	if pt := t.partners[addr]; pt != nil {
		return pt, nil
	}
	c, err := grpc.NewClient(addr, t.opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	pt := &partner{cc: c, opening: make(chan struct{}, 1)}
	t.partners[addr] = pt
	return pt, nil
}

func (t *grpcTransport) Sync(ctx context.Context, addr string, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	pt, err := t.partner(addr)
	if err != nil {
		return nil, err
	}
	for {
		pt.mu.Lock()
		unary := pt.unary
		pt.mu.Unlock()
		if unary {
			return meshpb.NewGossipServiceClient(pt.cc).Sync(ctx, req)
		}
		g, err := t.stream(ctx, pt)
		if err != nil {
			return nil, err
		}
		resp, err := g.call(ctx, t.withoutIdentity(req))
		switch {
		case errors.Is(err, errNotSent): // retired meanwhile: take the next stream
		case status.Code(err) == codes.Unimplemented:
			pt.mu.Lock()
			pt.unary = true
			pt.mu.Unlock()
		default:
			return resp, err
		}
	}
}

// withoutIdentity returns req without its From and Cluster where the
// stream's metadata says the same, when req is a probe or a digest
// request: the two a round sends most, whose sender's address would
// otherwise be most of their bytes. req is the caller's, so it is copied,
// which costs little on these small messages.
func (t *grpcTransport) withoutIdentity(req *meshpb.SyncRequest) *meshpb.SyncRequest {
	from := req.GetFrom() != "" && req.GetFrom() == t.self
	cluster := req.GetCluster() != "" && req.GetCluster() == t.cluster
	if !from && !cluster || req.GetFull() || req.GetPush() {
		return req
	}
	r := proto.Clone(req).(*meshpb.SyncRequest)
	if from {
		r.From = ""
	}
	if cluster {
		r.Cluster = ""
	}
	return r
}

// stream returns pt's stream, opening one if it has none it can use. The
// stream outlives the call; ctx bounds only the wait for it to open.
func (t *grpcTransport) stream(ctx context.Context, pt *partner) (*gossipStream, error) {
	select {
	case pt.opening <- struct{}{}:
		defer func() { <-pt.opening }()
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	pt.mu.Lock()
	g := pt.cur
	pt.mu.Unlock()
	if g != nil && g.usable(t.maxAge) {
		return g, nil
	}
	if g != nil {
		g.retire() // too old: the partner answers what it has, then ends it
	}
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(t.ctx, fromKey, t.self, clusterKey, t.cluster))
	stop := context.AfterFunc(ctx, cancel)
	s, err := meshpb.NewGossipServiceClient(pt.cc).Gossip(sctx)
	if !stop() && err == nil {
		err = status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	g = newGossipStream(s, cancel, t.idle)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		g.end(status.Error(codes.Canceled, "transport closed"))
		return nil, status.Error(codes.Canceled, "transport closed")
	}
	t.streams.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.streams.Done()
		g.recv()
	}()
	pt.mu.Lock()
	pt.cur = g
	pt.mu.Unlock()
	return g, nil
}

// Connect waits until the connection to addr is ready; see WaitReady.
func (t *grpcTransport) Connect(ctx context.Context, addr string) error {
	pt, err := t.partner(addr)
	if err != nil {
		return err
	}
	return WaitReady(ctx, pt.cc)
}

// WaitReady waits until cc is ready, and fails when ctx ends first or the
// connection is shut down. A connection whose last attempt failed is
// redialled at once (rather than after gRPC's backoff: with a reset
// connection waiting out the backoff, every call would fail meanwhile,
// and one lost packet would look like a run of failed exchanges), and
// WaitReady returns nil: the call that follows waits for the redial and,
// if it fails too, fails with its cause, so that a refused connection
// says so (an observer alerts at once on a refusal, not on a timeout).
// The default Transport's Connect uses it; a Transport that keeps its own
// *grpc.ClientConn values can implement Connector with it.
func WaitReady(ctx context.Context, cc *grpc.ClientConn) error {
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return fmt.Errorf("connect to %s: connection closed", cc.Target())
		case connectivity.TransientFailure:
			cc.ResetConnectBackoff()
			return nil
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connect to %s: %w (state %v)", cc.Target(), ctx.Err(), s)
		}
	}
}

func (t *grpcTransport) Forget(addr string) {
	t.mu.Lock()
	pt := t.partners[addr]
	delete(t.partners, addr)
	if pt != nil {
		t.closing.Add(1)
		go func() {
			defer t.closing.Done()
			pt.close()
		}()
	}
	t.mu.Unlock()
}

func (t *grpcTransport) Close() error {
	t.mu.Lock()
	partners := t.partners
	t.partners, t.closed = map[string]*partner{}, true
	t.mu.Unlock()
	t.cancel()
	for _, pt := range partners {
		pt.close()
	}
	t.closing.Wait()
	t.streams.Wait()
	return nil
}

// close ends pt's stream and connection.
func (pt *partner) close() {
	pt.mu.Lock()
	g := pt.cur
	pt.cur = nil
	pt.mu.Unlock()
	if g != nil {
		g.end(status.Error(codes.Canceled, "connection closed"))
	}
	pt.cc.Close()
}
