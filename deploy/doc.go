// Package deploy holds the files operators deploy mesh with (systemd/,
// kubernetes/) and the tests that check them: the Kubernetes manifests
// decode strictly into the API types and agree with each other, the
// systemd unit verifies with systemd-analyze where it exists, and the
// commands both run work against a static build of the agent. It is a
// module of its own so that the mesh module gains no Kubernetes
// dependency.
package deploy
