package agent

import (
	"strings"
	"testing"
	"time"
)

func TestValidateReportsEveryProblemByFlag(t *testing.T) {
	c := Config{
		Bind:     "nope",
		Join:     []string{"10.0.0.1"},
		Tags:     map[string]string{"": "v"},
		Period:   -time.Second,
		Snapshot: "/no/such/dir/members.json",
		Metrics:  "127.0.0.1:99999",
	}
	err := c.Validate()
	if err == nil {
		t.Fatalf("Validate(%+v) = nil, want errors", c)
	}
	for _, flag := range []string{"--bind", "--join", "--tag", "--period", "--snapshot", "--metrics"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate error does not name %s:\n%v", flag, err)
		}
	}
}

func TestValidateAddresses(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" for valid
	}{
		{Config{Bind: "127.0.0.1:7946"}, ""},
		{Config{Bind: "127.0.0.1:0"}, ""},
		{Config{Bind: "[::1]:7946", Join: []string{"[::1]:7947", "mesh.default.svc:7946"}}, ""},
		{Config{Bind: "0.0.0.0:7946", Advertise: "10.0.0.7:7946"}, ""},
		{Config{Bind: "0.0.0.0:7946"}, "set --advertise"},
		{Config{Bind: ":7946"}, "set --advertise"},
		{Config{Bind: "127.0.0.1:7946", Advertise: "0.0.0.0:7946"}, "--advertise"},
		{Config{Bind: "127.0.0.1"}, "not host:port"},
		{Config{Bind: "127.0.0.1:70000"}, "port must be a number in 0..65535"},
		{Config{Bind: "127.0.0.1:7946", Join: []string{"10.0.0.1:0"}}, "port must be a number in 1..65535"},
		{Config{Bind: "127.0.0.1:7946", Period: 10 * time.Microsecond}, "--period"},
		{Config{Bind: "127.0.0.1:7946", RPCTimeout: time.Second}, ""},
		{Config{Bind: "127.0.0.1:7946", RPCTimeout: -time.Second}, "--rpc-timeout -1s: must not be negative"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestWithPort(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:0":    "127.0.0.1:4242",
		"[::1]:0":        "[::1]:4242",
		"127.0.0.1:7946": "127.0.0.1:7946",
	} {
		if got := withPort(in, 4242); got != want {
			t.Errorf("withPort(%q, 4242) = %q, want %q", in, got, want)
		}
	}
}
