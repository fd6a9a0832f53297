package peer

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
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

func newGRPCTransport(opts []grpc.DialOption) *grpcTransport {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
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

// Connect waits until the connection to addr is ready, and fails when
// it cannot be made (refused, unreachable) or ctx ends first. A failed
// connection fails this call but is redialled at once: gRPC would
// otherwise fail every call for its reconnect backoff (a second and
// more), and one reset connection would look like a run of failed
// exchanges.
func (t *grpcTransport) Connect(ctx context.Context, addr string) error {
	c, err := t.conn(addr)
	if err != nil {
		return err
	}
	for {
		s := c.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return fmt.Errorf("connect to %s: connection closed", addr)
		case connectivity.TransientFailure:
			c.ResetConnectBackoff()
			return fmt.Errorf("connect to %s: %v", addr, s)
		case connectivity.Idle:
			c.Connect()
		}
		if !c.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connect to %s: %w (state %v)", addr, ctx.Err(), s)
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
