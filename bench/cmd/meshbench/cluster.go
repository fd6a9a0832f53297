package main

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// cluster is N nodes of one system in this process, all on 127.0.0.1,
// reporting their membership events to one tracker. Nodes are addressed
// by index in start order; node 0 is the seed every other node joins.
type cluster interface {
	// ids returns every node's id (its address), in start order.
	ids() []string
	// joinAll has every node but the first join the first, all at once,
	// and returns as soon as the joins are issued.
	joinAll()
	// setMeta makes node i publish meta.
	setMeta(i int, meta string)
	// crash stops node i without a goodbye; it returns once the node's
	// sockets are closed.
	crash(i int)
	// leave makes node i leave gracefully and stop; it returns once the
	// node is stopped.
	leave(i int)
	// traffic returns the cluster's cumulative byte counters.
	traffic() traffic
	// setLoss sets the probability of dropping each message.
	setLoss(p float64)
	// close stops every node still running.
	close()
}

// traffic counts bytes of a whole cluster since it started; each byte is
// counted once, by its sender.
type traffic struct {
	// payload is what the protocol itself sends: gRPC messages (protobuf
	// plus the 5-byte message prefix) for mesh; UDP packets and TCP
	// stream bytes, as handed to the sockets, for memberlist.
	payload int64
	// wire adds the framing the system puts around its messages on the
	// sockets: for mesh every byte of the HTTP/2 connections (headers,
	// trailers, frames, settings, pings), for memberlist the same as
	// payload. Neither counts IP, UDP or TCP headers.
	wire int64
}

// countConn counts the bytes read and written on a connection.
type countConn struct {
	net.Conn
	read, written *atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// openConn holds one count in open from its creation until it is closed.
type openConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func trackOpen(c net.Conn, open *atomic.Int64) net.Conn {
	open.Add(1)
	return &openConn{Conn: c, open: open}
}

func (c *openConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// countListener wraps every accepted connection in a countConn, and
// counts those open in open.
type countListener struct {
	net.Listener
	read, written *atomic.Int64
	open          *atomic.Int64
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: trackOpen(c, l.open), read: l.read, written: l.written}, nil
}

// listenRetry listens on addr, retrying briefly on a transient error.
func listenRetry(network, addr string) (net.Listener, error) {
	var err error
	for range 20 {
		var l net.Listener
		if l, err = net.Listen(network, addr); err == nil {
			return l, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, err
}
