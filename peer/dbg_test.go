package peer_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/gossipmesh/mesh/peer"
)

func TestDbgJoin(t *testing.T) {
	nodes := startCluster(t, 11, func(c *peer.PeerConfig) {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	converge(t, nodes, 10)
}
