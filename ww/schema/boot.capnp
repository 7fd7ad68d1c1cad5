# The boot server: a public meeting point for clusters where multicast is off.
#
# A node registers a signed discovery envelope (the same `Response` packet a
# node answers a multicast survey with: namespace, peer id, addresses, sent
# time, signed by the peer, tagged with the swarm key if the cluster has one).
# The server checks it, keeps it until its TTL ends, and hands it back verbatim
# to anyone who asks for the namespace; askers check every envelope themselves,
# so a boot server can hide peers but cannot forge them.
@0xa6d55ecc9b38e4f7;

interface BootServer {
  # Keeps `envelope` for up to `ttlMs` (the server may grant less); registering
  # again replaces the registrant's earlier envelope for the namespace.
  register @0 (envelope :Data, ttlMs :UInt64) -> (grantedMs :UInt64);

  # The live envelopes registered for `namespace`, at most `limit`.
  discover @1 (namespace :Text, limit :UInt32) -> (envelopes :List(Data));
}
