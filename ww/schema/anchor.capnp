# Anchors: each host's tree of named paths, where processes leave values and
# capabilities for others. The cluster's root `/` is not served by anyone: it
# is the membership view, one `/<peer id>` per host. Everything below a host
# lives on that host alone (nothing is replicated): see docs/ARCHITECTURE.md.
@0xe492337fab6a6eb0;

interface Anchor {
  # The children of `path` (segments below this host's root; empty: the root).
  list @0 (path :List(Text)) -> (children :List(Child));

  # What `path` holds; fails if there is no such path.
  get @1 (path :List(Text)) -> (entry :Entry);

  # Creates `path` (and its parents) if needed and makes it hold `value`.
  set @2 (path :List(Text), value :Data) -> ();

  # The same, holding a capability.
  setCapability @3 (path :List(Text), capability :Capability) -> ();

  # Removes `path` and everything below it; how many paths went.
  remove @4 (path :List(Text)) -> (removed :UInt32);
}

struct Child {
  name @0 :Text;
  # What the child holds: nothing (only a parent), bytes, or a capability.
  holds @1 :Holds;
  # How many children it has in turn.
  children @2 :UInt32;
}

enum Holds {
  nothing @0;
  value @1;
  capability @2;
}

struct Entry {
  union {
    nothing @0 :Void;
    value @1 :Data;
    capability @2 :Capability;
  }
}
