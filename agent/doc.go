// Package agent runs a mesh peer as a service, as `mesh agent` does: one
// gRPC port serves the gossip protocol (meshpb.GossipService) and
// grpc.health.v1 to every member; the client API (meshpb.MeshAdmin:
// Members, Join, SetMeta, Leave, Watch) has an address of its own
// (Config.Admin: a unix socket, or TCP behind admin certificates), so that
// no member can control another agent. Event handlers run a program on
// each membership event. Join host names are resolved to every address
// and re-resolved with the seed backoff; a snapshot file lets a restarted
// agent rejoin; Prometheus metrics (MetricNames) are served on their own
// port.
//
//	a, err := agent.New(agent.Config{Bind: "127.0.0.1:7946", Admin: "unix:/run/mesh/mesh.sock", Join: []string{"10.0.0.1:7946"}})
//	if err != nil { ... } // bad config or port in use, one line
//	err = a.Run(ctx)      // until ctx is done or a client calls Leave; then leaves and stops
//
// Run leaves gracefully whichever way it ends: every member is told at
// once, and marks the agent as left rather than failed.
package agent
