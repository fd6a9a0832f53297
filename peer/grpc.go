package peer

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gossipmesh/mesh/meshpb"
)

// grpcTransport is the default Transport: one lazily connected
// *grpc.ClientConn per peer address, reused across rounds.
type grpcTransport struct {
	opts []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
	// closing tracks connections being closed in the background: Close
	// can block while calls drain, and Forget is called from the protocol
	// paths, which must not stall. Close waits for them.
	closing sync.WaitGroup
}

var (
	_ Transport = (*grpcTransport)(nil)
	_ Connector = (*grpcTransport)(nil)
)

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
	// A connection no call used for MaxRetryInterval closes: the overlay
	// changes a peer's partners now and then, and a connection to a
	// former one would otherwise stay open for good.
	opts = append([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: cfg.DialTimeout}),
		grpc.WithIdleTimeout(cfg.MaxRetryInterval)}, opts...)
	return &grpcTransport{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

func (t *grpcTransport) conn(addr string) (*grpc.ClientConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("dial %s: transport closed", addr)
	}
	if c := t.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, t.opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	t.conns[addr] = c
	return c, nil
}

func (t *grpcTransport) Sync(ctx context.Context, addr string, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	c, err := t.conn(addr)
	if err != nil {
		return nil, err
	}
	return meshpb.NewGossipServiceClient(c).Sync(ctx, req)
}

// Connect waits until the connection to addr is ready; see WaitReady.
func (t *grpcTransport) Connect(ctx context.Context, addr string) error {
	c, err := t.conn(addr)
	if err != nil {
		return err
	}
	return WaitReady(ctx, c)
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
	c := t.conns[addr]
	delete(t.conns, addr)
	if c != nil {
		t.closing.Add(1)
		go func() {
			defer t.closing.Done()
			c.Close()
		}()
	}
	t.mu.Unlock()
}

func (t *grpcTransport) Close() error {
	t.mu.Lock()
	conns := t.conns
	t.conns, t.closed = map[string]*grpc.ClientConn{}, true
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	t.closing.Wait()
	return nil
}
