package meshtls_test

import (
	"log"
	"net"

	"google.golang.org/grpc"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/meshtls"
	"github.com/gossipmesh/mesh/peer"
)

// A peer with mutual TLS and owner-only writes: the same Reloader gives
// the server credentials, the dial credentials and the Authority. Reload
// (on SIGHUP, say) rotates all three.
func Example() {
	tlsFiles, err := meshtls.LoadFiles("node.pem", "node-key.pem", "ca.pem")
	if err != nil {
		log.Fatal(err) // e.g. "--tls-cert node.pem: open node.pem: no such file or directory"
	}
	tlsFiles.RequireName("10.0.0.7:7946") // a reload must keep naming this peer
	p := peer.NewPeer(peer.PeerConfig{
		SelfEndpoint: "10.0.0.7:7946",
		DialOptions:  []grpc.DialOption{tlsFiles.DialOption()},
		Authority:    tlsFiles.Authority(),
	})
	srv := grpc.NewServer(tlsFiles.ServerOption())
	meshpb.RegisterGossipServiceServer(srv, p)
	lis, err := net.Listen("tcp", "10.0.0.7:7946")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	go p.Run()
}
