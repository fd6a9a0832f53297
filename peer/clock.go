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
