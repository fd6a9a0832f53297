package peer_test

import (
	"fmt"
	"net"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// Two peers on loopback: the second learns the first through AddSeed, and
// both end up with the same members and metas.
func Example() {
	start := func(name string) (*peer.Peer, func()) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		p := peer.NewPeer(peer.PeerConfig{SelfEndpoint: lis.Addr().String(), PingPeriod: 20 * time.Millisecond})
		srv := grpc.NewServer()
		meshpb.RegisterGossipServiceServer(srv, p) // the caller owns the server
		go srv.Serve(lis)
		go p.Run()
		p.UpdateMeta(&meshpb.PeerMeta{Name: name})
		return p, func() { p.Stop(); srv.Stop() }
	}
	a, stopA := start("alpha")
	defer stopA()
	b, stopB := start("beta")
	defer stopB()
	b.AddSeed(a.Addr())

	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(a.GetMembers()) == 2 && len(b.GetMembers()) == 2 {
			break
		}
	}
	for _, p := range []*peer.Peer{a, b} {
		var names []string
		for _, meta := range p.GetMembers() {
			names = append(names, meta.GetName())
		}
		slices.Sort(names)
		fmt.Println(names)
	}
	// Output:
	// [alpha beta]
	// [alpha beta]
}
