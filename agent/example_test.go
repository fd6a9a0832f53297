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
