package agent_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gossipmesh/mesh/agent"
)

// An agent on a free loopback port: alone, it is the whole (converged)
// cluster; cancelling Run makes it leave and return.
func Example() {
	a, err := agent.New(agent.Config{Bind: "127.0.0.1:0", Name: "solo", Period: 50 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()

	m := agent.MembersResponse(a.Peer())
	fmt.Println(len(m.GetMembers()), m.GetMembers()[0].GetMeta().GetName(), m.GetSelf() == a.Addr())
	cancel()
	fmt.Println("Run:", <-done)
	// Output:
	// 1 solo true
	// Run: <nil>
}

// Admin addresses: a unix socket (the default of `mesh agent`), or TCP;
// only a loopback TCP address may go without admin certificates.
func ExampleParseAdmin() {
	for _, s := range []string{"unix:/run/mesh/mesh.sock", "127.0.0.1:7373", "10.0.0.7:7373"} {
		a, err := agent.ParseAdmin(s)
		fmt.Println(a.Network, a.Address, a.Local(), err)
	}
	// Output:
	// unix /run/mesh/mesh.sock true <nil>
	// tcp 127.0.0.1:7373 true <nil>
	// tcp 10.0.0.7:7373 false <nil>
}

// An event handler for some event types, as --event-handler takes it.
func ExampleParseEventHandler() {
	h, err := agent.ParseEventHandler("leave,failed=/usr/local/lib/mesh/deregister")
	fmt.Println(h.Types, h.Program, err)
	// Output:
	// [leave failed] /usr/local/lib/mesh/deregister <nil>
}
