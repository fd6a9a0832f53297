// Package meshtls secures a mesh cluster with mutual TLS, and uses the same
// certificates for owner-only writes.
//
// A [Reloader] holds this peer's certificate, its private key and the pool
// of trusted CAs, loaded from PEM files ([LoadFiles]) or given in memory
// ([New]). From it come:
//
//   - gRPC credentials for both sides of every connection
//     ([Reloader.ServerOption], [Reloader.DialOption]): TLS 1.3, and each
//     side must present a certificate signed by a trusted CA, so a process
//     without one can neither join, read membership nor push entries, and
//     cannot use the admin API either. A client also checks that the
//     server's certificate names the host it dialed.
//   - a [peer.Authority] ([Reloader.Authority]): this peer signs its own
//     ALIVE and LEFT entries with its TLS private key, and every peer
//     accepts such an entry for address A only with a signature by a
//     certificate that chains to a trusted CA and names A's host. So the
//     holder of a valid certificate still cannot rewrite another member's
//     meta, make it leave, or refute its removal for it.
//
// # Identity
//
// A certificate names a peer by host: an IP SAN equal to the host of the
// peer's "host:port" address, or a DNS SAN equal to it (no wildcards, no
// common name). Several peers on one host can therefore write each other's
// entries. To tell them apart, give each certificate a URI SAN
// "mesh://host:port": a certificate with any mesh:// URI names exactly
// those addresses and no other.
//
// # Rotation without downtime
//
// Every handshake and every signature reads the Reloader's current
// material, so [Reloader.Reload] (the agent calls it on SIGHUP, and when
// the files change) takes effect for new connections at once; established
// connections keep what they negotiated until they close (the agent's server
// closes each after at most an hour). A reload that fails (unreadable
// files, a key that does not match the certificate, a certificate not
// signed by a CA of the new bundle, or, after [Reloader.RequireName], one
// that does not name this peer) keeps the previous material and returns
// the error.
//
// To move a cluster from CA1 to CA2:
//
//  1. On every peer, make the CA file the bundle CA1+CA2 and reload. Peers
//     now accept certificates of either CA.
//  2. On every peer, install a certificate and key signed by CA2 and
//     reload. The agent then re-signs its own entry with the new
//     certificate, so that its entry stays valid once CA1 goes.
//  3. When every agent runs on a CA2 certificate and the cluster has
//     converged, and at least TombstoneTTL after step 2 (a LEFT tombstone
//     signed under CA1 may circulate until then), make the CA file CA2
//     alone and reload.
//
// Renewing a leaf under the same CA is step 2 alone.
package meshtls
