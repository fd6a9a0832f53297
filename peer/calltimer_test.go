package peer

import (
	"testing"
	"time"
)

func TestCallTimerStartsCautious(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCallTimer(50*time.Millisecond, t0)
	if got := c.timeout(); got != 200*time.Millisecond {
		t.Fatalf("before any answer: %v, want the longest, 200ms", got)
	}
	c.observe(3*time.Millisecond, t0.Add(10*time.Millisecond))
	if got := c.timeout(); got != 50*time.Millisecond {
		t.Fatalf("after a quick answer: %v, want RPCTimeout, 50ms", got)
	}
}

func TestCallTimerFollowsTheSlowestAnswer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCallTimer(50*time.Millisecond, t0)
	for i, rtt := range []time.Duration{2, 40, 3, 5} {
		c.observe(rtt*time.Millisecond, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if got := c.timeout(); got != 80*time.Millisecond {
		t.Fatalf("slowest answer 40ms among quick ones: %v, want twice it, 80ms", got)
	}
	c.observe(170*time.Millisecond, t0.Add(10*time.Millisecond)) // a late answer
	if got := c.timeout(); got != 200*time.Millisecond {
		t.Fatalf("an answer after 170ms: %v, want the longest, 200ms", got)
	}
}

func TestCallTimerForgetsSlowAnswersAfterTwoWindows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCallTimer(50*time.Millisecond, t0) // windows of 250ms
	c.observe(60*time.Millisecond, t0.Add(100*time.Millisecond))
	for _, step := range []struct {
		at   time.Duration
		want time.Duration
	}{
		{200 * time.Millisecond, 120 * time.Millisecond}, // same window
		{300 * time.Millisecond, 120 * time.Millisecond}, // the previous window's
		{499 * time.Millisecond, 120 * time.Millisecond},
		{500 * time.Millisecond, 50 * time.Millisecond}, // two windows on: forgotten
	} {
		now := t0.Add(step.at)
		c.roll(now)
		c.observe(time.Millisecond, now)
		if got := c.timeout(); got != step.want {
			t.Fatalf("at %v: %v, want %v", step.at, got, step.want)
		}
	}
}

func TestCallTimerForgetsAcrossAPause(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCallTimer(50*time.Millisecond, t0)
	c.observe(90*time.Millisecond, t0)
	c.roll(t0.Add(time.Second)) // no round for four windows
	if got := c.timeout(); got != 50*time.Millisecond {
		t.Fatalf("after a pause: %v, want RPCTimeout, 50ms", got)
	}
}
