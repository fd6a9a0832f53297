package peer

import "time"

// callTimer sets how long this peer waits for an answer from the round
// trips of its answered calls: twice the slowest of the last one to two
// windows, never below RPCTimeout nor above maxCallSlowdown × RPCTimeout.
// On a loaded machine a share of the answers takes longer than
// RPCTimeout: giving up on them wastes what the partner spent answering,
// makes live partners look silent, and the alerts and retries that follow
// load the machine further. The slowest answer, not a mean, is followed
// because that share is a tail: most answers still come at once. Until
// the first answer it waits the longest, as TCP starts with a cautious
// timeout: a peer starting on a loaded machine has nothing to go by. An
// answer that comes after its call failed is measured too (the driver
// waits up to the longest timeout for it); calls never answered are not,
// so a silent or dead partner never slows the detection of others. It is
// a pure value: the time is an argument.
type callTimer struct {
	floor, ceil time.Duration
	window      time.Duration
	since       time.Time     // when the current window began
	peak, prev  time.Duration // slowest answer of the current and the previous window
	measured    bool
}

// maxCallSlowdown bounds how far slow answers stretch the deadline, as
// Lifeguard bounds its local health multiplier.
const maxCallSlowdown = 4

// callWindows is how many RPCTimeouts a window lasts: a slow answer
// stretches the deadline for 5 to 10 RPCTimeouts after it.
const callWindows = 5

func newCallTimer(rpcTimeout time.Duration, now time.Time) callTimer {
	return callTimer{floor: rpcTimeout, ceil: maxCallSlowdown * rpcTimeout, window: callWindows * rpcTimeout, since: now}
}

// observe records the round trip of a call answered at now.
func (c *callTimer) observe(rtt time.Duration, now time.Time) {
	c.roll(now)
	c.peak, c.measured = max(c.peak, rtt), true
}

// roll starts a new window once the current one is over, and forgets
// both after two (a process that was paused); each round rolls it.
func (c *callTimer) roll(now time.Time) {
	switch gap := now.Sub(c.since); {
	case gap >= 2*c.window:
		c.since, c.peak, c.prev = now, 0, 0
	case gap >= c.window:
		c.since, c.peak, c.prev = c.since.Add(c.window), 0, c.peak
	}
}

// timeout returns the deadline of the next call.
func (c *callTimer) timeout() time.Duration {
	if !c.measured {
		return c.ceil
	}
	return c.measuredTimeout()
}

// measuredTimeout is timeout without the cautious start: what the
// answers so far call for.
func (c *callTimer) measuredTimeout() time.Duration {
	return min(max(2*max(c.peak, c.prev), c.floor), c.ceil)
}
