package faults

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The fault-injecting proxy runs as a child process: the test binary
// re-executed (inside a host's namespace) with envProxy set, which
// TestMain turns into a call of runProxy. It listens on the agent's
// advertised address and forwards to the agent's bind address, so every
// exchange other agents start with it goes through it; client commands
// (mesh members, watch) talk to the agent directly.
//
// Its faults are read from a control file, polled every 20 ms: a line
// "loss=0.10 jitter=400ms", or empty for none. Per direction of each
// connection, every read (one or a few HTTP/2 frames: a gRPC message, a
// ping, a window update) is
//   - lost with probability loss: a TCP stream cannot skip bytes and go
//     on, so the proxy resets both connections; what was in flight on
//     them is lost, and the agent's next exchange dials again;
//   - otherwise delayed by a uniform 0..jitter, and delivered in order (a
//     read never overtakes the one before it, so back-to-back reads can
//     wait longer than their own draw).
//
// Two more faults make the agent unreachable while its own calls, which
// do not pass its proxy, still go out: "refuse" resets every connection
// coming in, open or new; "blackhole" forwards nothing, so that callers
// wait out their deadlines, and resets each connection it swallowed once
// it ends (its stream lost bytes).
//
// On SIGTERM it prints one line of counts and exits 0.
const envProxy = "MESHF_PROXY"

type faultSpec struct {
	loss      float64
	jitter    time.Duration
	refuse    bool
	blackhole bool
}

func parseFaults(s string) (faultSpec, error) {
	var f faultSpec
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "loss":
			f.loss, err = strconv.ParseFloat(v, 64)
		case "jitter":
			f.jitter, err = time.ParseDuration(v)
		case "refuse":
			f.refuse = true
		case "blackhole":
			f.blackhole = true
		default:
			err = fmt.Errorf("unknown fault %q", k)
		}
		if err != nil {
			return f, fmt.Errorf("fault spec %q: %w", s, err)
		}
	}
	return f, nil
}

type proxyStats struct {
	conns, reads, lost atomic.Int64
	delayNs            atomic.Int64 // total delay of delivered reads
}

func runProxy(spec string) int {
	args := map[string]string{}
	for _, kv := range strings.Fields(spec) {
		k, v, _ := strings.Cut(kv, "=")
		args[k] = v
	}
	lis, err := net.Listen("tcp", args["listen"])
	if err != nil {
		fmt.Fprintf(os.Stderr, "proxy: %v\n", err)
		return 1
	}
	var cur atomic.Pointer[faultSpec]
	cur.Store(&faultSpec{})
	go func() {
		last := ""
		for {
			b, _ := os.ReadFile(args["ctl"])
			if s := strings.TrimSpace(string(b)); s != last {
				if f, err := parseFaults(s); err == nil {
					cur.Store(&f)
					last = s
				} else {
					fmt.Fprintln(os.Stderr, "proxy:", err)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	st := &proxyStats{}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			st.conns.Add(1)
			if cur.Load().refuse {
				reset(c)
				continue
			}
			go proxyConn(c, args["target"], &cur, st)
		}
	}()
	<-sig
	n := max(st.reads.Load()-st.lost.Load(), 1)
	fmt.Printf("proxy %s: conns=%d reads=%d lost=%d mean_delay=%v\n", args["listen"], st.conns.Load(), st.reads.Load(), st.lost.Load(),
		(time.Duration(st.delayNs.Load()) / time.Duration(n)).Round(time.Millisecond))
	return 0
}

func proxyConn(c net.Conn, target string, cur *atomic.Pointer[faultSpec], st *proxyStats) {
	d, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		reset(c)
		return
	}
	var once sync.Once
	kill := func() { once.Do(func() { reset(c); reset(d) }) }
	swallowed, done := new(atomic.Bool), make(chan struct{})
	go func() {
		// Faults that began or ended while the connection was idle.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if f := cur.Load(); f.refuse || swallowed.Load() && !f.blackhole {
				kill()
			}
		}
	}()
	go pipe(c, d, cur, st, swallowed, kill)
	pipe(d, c, cur, st, swallowed, kill)
	close(done)
}

// reset closes c with an RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst, one read at a time, with the current faults.
func pipe(src, dst net.Conn, cur *atomic.Pointer[faultSpec], st *proxyStats, swallowed *atomic.Bool, kill func()) {
	ch := make(chan chunk, 4096)
	go func() {
		for ck := range ch {
			time.Sleep(time.Until(ck.at))
			if _, err := dst.Write(ck.b); err != nil {
				kill()
				for range ch {
				}
				return
			}
		}
		kill()
	}()
	defer close(ch)
	var last time.Time
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			st.reads.Add(1)
			f := cur.Load()
			if f.blackhole {
				swallowed.Store(true)
				continue
			}
			if f.loss > 0 && rand.Float64() < f.loss {
				st.lost.Add(1)
				kill()
				return
			}
			now := time.Now()
			at := now
			if f.jitter > 0 {
				at = now.Add(rand.N(f.jitter))
			}
			if at.Before(last) {
				at = last
			}
			last = at
			st.delayNs.Add(int64(at.Sub(now)))
			ch <- chunk{buf[:n], at}
		}
		if err != nil {
			return
		}
	}
}
