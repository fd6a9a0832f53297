package peer

import "google.golang.org/grpc"

// windowSize is the HTTP/2 flow-control window, per stream and per
// connection, of gossip connections. gRPC's default window starts at
// 64 KiB and grows by bandwidth-delay estimation, which pings the partner
// for almost every message received: on gossip's small messages a ping,
// its ack and a window update per message outweigh the message
// (docs/MEASUREMENTS.md). A fixed window turns the estimation off; 1 MiB
// still lets a full delta stream at 10 MB/s over a 100 ms round trip.
const windowSize = 1 << 20

// ServerOptions returns the options a *grpc.Server that serves a Peer
// should be created with: fixed HTTP/2 windows, which spare a ping, its
// ack and a window update per message received. A server without them
// works, at those bytes. Options of your own (credentials, limits) go
// after them.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize)}
}

// dialWindows are the client side of ServerOptions.
func dialWindows() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(windowSize), grpc.WithInitialConnWindowSize(windowSize)}
}
