package peer

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gossipmesh/mesh/meshpb"
)

// gossipStream is one long-lived Gossip stream to a partner. The partner
// answers requests in the order they came, so each answer goes to the
// oldest waiter: a call that gave up still holds its place and its late
// answer is dropped.
type gossipStream struct {
	s      meshpb.GossipService_GossipClient
	cancel context.CancelFunc
	opened time.Time
	idle   *time.Timer

	sendMu sync.Mutex // Send and CloseSend, in the order of waiting

	mu       sync.Mutex
	waiting  []chan streamReply
	ended    error // why the stream ended; nothing waits once it is set
	retired  bool  // takes no new requests: CloseSend was sent
	lastSend time.Time
	lastRecv time.Time
}

type streamReply struct {
	resp *meshpb.SyncResponse
	err  error
}

var errStalled = status.Error(codes.Unavailable, "gossip stream reset: the partner answered nothing within a call's deadline")

// errNotSent: the stream ended or was retired before the request went.
var errNotSent = errors.New("gossip stream closed before the request was sent")

func newGossipStream(s meshpb.GossipService_GossipClient, cancel context.CancelFunc, idle time.Duration) *gossipStream {
	now := time.Now()
	g := &gossipStream{s: s, cancel: cancel, opened: now, lastSend: now, lastRecv: now}
	g.mu.Lock()
	g.idle = time.AfterFunc(idle, func() { g.retireIfIdle(idle) })
	g.mu.Unlock()
	return g
}

// usable says whether new requests may go on g: it has not ended, is not
// retired and is younger than maxAge (a server rotates its connections
// now and then, and a stream would keep an old one open for good).
func (g *gossipStream) usable(maxAge time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ended == nil && !g.retired && time.Since(g.opened) < maxAge
}

// call sends req and waits for its answer until ctx ends. A response
// carrying a refusal returns it as the error Sync would have returned.
func (g *gossipStream) call(ctx context.Context, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	w := make(chan streamReply, 1)
	g.sendMu.Lock()
	if err := ctx.Err(); err != nil { // waited out another Send, whose own deadline resets a stalled stream
		g.sendMu.Unlock()
		return nil, status.FromContextError(err).Err()
	}
	g.mu.Lock()
	if g.ended != nil || g.retired {
		g.mu.Unlock()
		g.sendMu.Unlock()
		return nil, errNotSent
	}
	g.waiting = append(g.waiting, w)
	sent := time.Now()
	g.lastSend = sent
	g.mu.Unlock()
	// A Send blocked by flow control past ctx means the partner stopped
	// reading: reset the stream, which fails every call on it.
	stop := context.AfterFunc(ctx, func() { g.end(errStalled) })
	err := g.s.Send(req)
	stop()
	g.sendMu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) { // on io.EOF, Recv returns the cause to every waiter
		g.end(err)
	}
	select {
	case r := <-w:
		if r.err == nil && r.resp.GetCode() != 0 {
			return nil, status.Error(codes.Code(r.resp.GetCode()), r.resp.GetError())
		}
		return r.resp, r.err
	case <-ctx.Done():
		g.mu.Lock()
		stalled := g.lastRecv.Before(sent)
		g.mu.Unlock()
		if stalled { // nothing came back during the whole wait: a dead or wedged partner
			g.end(errStalled)
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// recv hands each answer to the oldest waiter until the stream ends.
func (g *gossipStream) recv() {
	for {
		resp, err := g.s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "gossip stream closed by the partner")
			}
			g.end(err)
			return
		}
		g.mu.Lock()
		if len(g.waiting) == 0 {
			g.mu.Unlock()
			g.end(status.Error(codes.Internal, "gossip stream: an answer to no request"))
			return
		}
		w := g.waiting[0]
		g.waiting = g.waiting[1:]
		g.lastRecv = time.Now()
		g.mu.Unlock()
		w <- streamReply{resp: resp}
	}
}

// end fails every waiter with err and releases the stream.
func (g *gossipStream) end(err error) {
	g.mu.Lock()
	if g.ended == nil {
		g.ended = err
	}
	ws := g.waiting
	g.waiting = nil
	g.idle.Stop()
	g.mu.Unlock()
	for _, w := range ws {
		w <- streamReply{err: err}
	}
	g.cancel()
}

// retire takes no new requests and half-closes g: the partner answers
// what it has, then ends the stream.
func (g *gossipStream) retire() {
	g.sendMu.Lock()
	defer g.sendMu.Unlock()
	g.mu.Lock()
	if g.retired || g.ended != nil {
		g.mu.Unlock()
		return
	}
	g.retired = true
	g.idle.Stop()
	g.mu.Unlock()
	_ = g.s.CloseSend()
}

// retireIfIdle retires g once no request went on it for idle, so that
// the connection under it can go idle and close too.
func (g *gossipStream) retireIfIdle(idle time.Duration) {
	g.mu.Lock()
	wait := idle - time.Since(g.lastSend)
	if len(g.waiting) > 0 {
		wait = idle
	}
	if g.ended != nil || g.retired {
		g.mu.Unlock()
		return
	}
	if wait > 0 {
		g.idle.Reset(wait)
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.retire()
}
