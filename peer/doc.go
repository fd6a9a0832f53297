// Package peer is a member of a mesh cluster: it keeps the membership map
// (crdt.Map, keyed by peer address) converged with other peers by gossip
// over gRPC, and removes peers that stop answering.
//
// A Peer is a meshpb.GossipServiceServer that you register on your own
// grpc.Server; Run gossips every PingPeriod until Stop:
//
//	p := peer.NewPeer(peer.PeerConfig{SelfEndpoint: "10.0.0.7:7946", PingPeriod: time.Second})
//	srv := grpc.NewServer(peer.ServerOptions()...)
//	meshpb.RegisterGossipServiceServer(srv, p)
//	go srv.Serve(lis)
//	go p.Run()
//	p.UpdateMeta(&meshpb.PeerMeta{Name: "api-7"})
//	p.AddSeed("10.0.0.1:7946")
//	members := p.GetMembers() // address -> meta, self included
//	p.Stop()
//
// The protocol itself is a synchronous state machine driven with the time
// as an argument: sync.go (the exchange), merge.go (applying what
// arrives) and liveness.go with its types, overlay.go (who observes
// whom), detector.go (whether a probe reaches a subject), reports.go
// (observers' alerts, a CRDT) and outbox.go (batched pushes). Peer adds
// the lock, the ticker and the transport: grpc.go and stream.go, one
// long-lived Gossip stream per partner.
// mesh/docs/PROTOCOL.md explains the exchange, the removal rule and why the
// cluster converges.
//
// Guarantees: every peer eventually holds every live peer's address and
// latest meta; a peer that stops answering RPCs, whether it crashed or
// still calls out, is removed by all once enough of its observers alert
// (at once on refused connections, about Expiry after it went silent
// otherwise) and does not come back through stale gossip or its own
// refutations while unreachable; no single peer's verdict removes anyone;
// a peer restarted on the same address rejoins with its new meta; two
// clusters merge as soon as one member of each meets, and partitions heal
// by themselves.
package peer
