package peer

import (
	"context"
	"time"

	"github.com/gossipmesh/mesh/meshpb"
)

// Clock reads the current time. The simulator supplies a virtual one.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Transport carries Sync calls to other peers. Implementations must be
// safe for concurrent use; Sync must honour ctx's deadline.
type Transport interface {
	// Sync sends req to the peer at addr and returns its answer.
	Sync(ctx context.Context, addr string, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error)
	// Forget releases any connection to addr; the peer calls it for
	// members it removed. A later Sync to addr may connect again.
	Forget(addr string)
	// Close releases every connection. The peer calls it from Stop.
	Close() error
}

// Connector is implemented by a Transport that can connect ahead of a
// call: the peer gives Connect DialTimeout, then the call RPCTimeout.
// Connect returns nil at once when a connection is ready.
type Connector interface {
	Connect(ctx context.Context, addr string) error
}

// Authority proves who wrote an entry. Sign and Verify must be safe for
// concurrent use; they are called with the peer's lock held, so they must
// not block on the network.
type Authority interface {
	// Sign returns credentials for data, an entry this peer writes about
	// itself: a certificate (or any proof of identity) and a signature.
	Sign(data []byte) (cert, sig []byte, err error)
	// Verify checks that cert names addr and that sig is its signature of
	// data. An error rejects the message that carried the entry.
	Verify(addr string, data, cert, sig []byte) error
}
