package main

import (
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseAgentFlags(t *testing.T) {
	f, _, err := parseAgentFlags([]string{
		"--bind", "127.0.0.1:0", "--advertise", "127.0.0.1:7000",
		"--join", "10.0.0.1:7946,mesh.svc:7946", "--join", "10.0.0.2:7946",
		"--name", "api-7", "--tag", "zone=b", "--tag", "role=api",
		"--period", "250ms", "--cluster", "prod", "--log-format", "json", "--log-level", "debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	if c.Bind != "127.0.0.1:0" || c.Advertise != "127.0.0.1:7000" || c.Name != "api-7" || c.Period != 250*time.Millisecond || c.Cluster != "prod" {
		t.Errorf("parsed config %+v", c)
	}
	if want := []string{"10.0.0.1:7946", "mesh.svc:7946", "10.0.0.2:7946"}; !slices.Equal(c.Join, want) {
		t.Errorf("Join = %v, want %v", c.Join, want)
	}
	if want := map[string]string{"zone": "b", "role": "api"}; !maps.Equal(c.Tags, want) {
		t.Errorf("Tags = %v, want %v", c.Tags, want)
	}
	if f.logFormat != "json" || f.logLevel.String() != "DEBUG" {
		t.Errorf("log format %q level %v, want json DEBUG", f.logFormat, f.logLevel)
	}

	f, _, err = parseAgentFlags(nil)
	if err != nil || f.cfg.Bind != defaultAddr || f.cfg.Period != time.Second || f.logFormat != "text" {
		t.Errorf("defaults: %+v, %v", f, err)
	}
}

func TestParseAgentFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--bind", "localhost"}, `--bind: "localhost" is not host:port`},
		{[]string{"--bind", "0.0.0.0:7946"}, "set --advertise"},
		{[]string{"--period", "soon"}, `invalid value "soon" for flag -period`},
		{[]string{"--period", "-1s"}, "--period -1s: must be at least 1ms"},
		{[]string{"--tag", "novalue"}, `want key=value, got "novalue"`},
		{[]string{"--log-format", "xml"}, "want one of text, json"},
		{[]string{"--join", "10.0.0.1"}, `--join: "10.0.0.1" is not host:port`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		_, _, err := parseAgentFlags(tc.args)
		var u *usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseAgentFlags(%q) = %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := parseAgentFlags([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseAgentFlags(-h) = %v, want flag.ErrHelp", err)
	}
	// Every problem at once, in one error.
	_, _, err := parseAgentFlags([]string{"--bind", "x", "--join", "y", "--period", "1ns"})
	for _, want := range []string{"--bind", "--join", "--period"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("combined error %v lacks %s", err, want)
		}
	}
}

func TestParseIntersperses(t *testing.T) {
	fs := newFlags("join")
	timeout := fs.Duration("timeout", 0, "")
	pos, err := parse(fs, []string{"a:1", "--timeout", "3s", "b:2", "--", "--c"})
	if err != nil || *timeout != 3*time.Second || !slices.Equal(pos, []string{"a:1", "b:2", "--c"}) {
		t.Errorf("parse = %q, %v, timeout %v; want [a:1 b:2 --c], 3s", pos, err, *timeout)
	}
}

func TestMetaRequest(t *testing.T) {
	req, err := metaRequest([]string{"set", "name=api-7", "zone=b", "empty="}, false)
	if err != nil || req.GetName() != "api-7" || req.Name == nil || req.GetTags()["zone"] != "b" || req.GetTags()["empty"] != "" || len(req.GetTags()) != 2 {
		t.Errorf("meta set = %v, %v", req, err)
	}
	req, err = metaRequest([]string{"set", "zone=c"}, false)
	if err != nil || req.Name != nil {
		t.Errorf("meta set without name must leave the name unset: %v, %v", req, err)
	}
	req, err = metaRequest([]string{"delete", "zone", "role"}, false)
	if err != nil || !slices.Equal(req.GetDeleteTags(), []string{"zone", "role"}) {
		t.Errorf("meta delete = %v, %v", req, err)
	}
	for _, bad := range [][]string{nil, {"set"}, {"set", "zone"}, {"set", "=v"}, {"delete"}, {"frob"}} {
		if _, err := metaRequest(bad, false); err == nil {
			t.Errorf("metaRequest(%q) = nil error", bad)
		}
	}
}

func TestParseAgentAdminAndHandlers(t *testing.T) {
	f, _, err := parseAgentFlags([]string{"--admin", "none"})
	if err != nil || f.cfg.Admin != "" {
		t.Errorf("--admin none: Admin %q, %v; want no admin API", f.cfg.Admin, err)
	}
	f, _, err = parseAgentFlags([]string{"--admin", "127.0.0.1:7373", "--event-handler", "/bin/true", "--event-handler", "leave,failed=/bin/true", "--event-handler-timeout", "3s"})
	if err != nil || f.cfg.Admin != "127.0.0.1:7373" || len(f.cfg.EventHandlers) != 2 || f.cfg.HandlerTimeout != 3*time.Second {
		t.Fatalf("parsed %+v, %v", f.cfg, err)
	}
	if h := f.cfg.EventHandlers[1]; !slices.Equal(h.Types, []string{"leave", "failed"}) || h.Program != "/bin/true" {
		t.Errorf("second handler %+v", h)
	}
	f, _, err = parseAgentFlags(nil)
	if err != nil || f.cfg.Admin != defaultAdmin() || f.cfg.HandlerTimeout != 10*time.Second {
		t.Errorf("defaults: Admin %q, timeout %v, %v; want %q, 10s", f.cfg.Admin, f.cfg.HandlerTimeout, err, defaultAdmin())
	}
}

func TestAdminDefault(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tmp := os.TempDir()
	for _, tc := range []struct {
		uid  int
		env  func(string) string
		want string
	}{
		{0, env(), "unix:/run/mesh/mesh.sock"},
		{0, env("XDG_RUNTIME_DIR", "/run/user/0"), "unix:/run/mesh/mesh.sock"},
		{1000, env("XDG_RUNTIME_DIR", "/run/user/1000"), "unix:/run/user/1000/mesh/mesh.sock"},
		{1000, env(), "unix:" + filepath.Join(tmp, "mesh-1000", "mesh.sock")},
		{1000, env("XDG_RUNTIME_DIR", "relative"), "unix:" + filepath.Join(tmp, "mesh-1000", "mesh.sock")},
		{0, env("MESH_ADMIN", "127.0.0.1:7373"), "127.0.0.1:7373"},
		{1000, env("MESH_ADMIN", "unix:/srv/mesh.sock", "XDG_RUNTIME_DIR", "/run/user/1000"), "unix:/srv/mesh.sock"},
	} {
		if got := adminDefault(tc.uid, tc.env); got != tc.want {
			t.Errorf("adminDefault(uid %d) = %q, want %q", tc.uid, got, tc.want)
		}
	}
}
