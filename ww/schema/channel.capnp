# Channels: the cluster's reliable, ordered IPC primitive (see docs/CHANNELS.md).
#
# A value is any Cap'n Proto pointer, capabilities included: that is how a worker
# hands the gateway its `Worker` capability. A `Chan` hands out each facet alone,
# so a holder can be given the right to send without the right to receive.
@0xf0a422b2388c7eb8;

interface Sender {
  # Completes when the value is queued (buffered channel) or taken by a receiver
  # (rendezvous channel); fails with "closed" once the channel is closed.
  send @0 (value :AnyPointer) -> ();
}

interface Recver {
  # Completes with the oldest value; fails with "closed" once the channel is
  # closed and drained.
  recv @0 () -> (value :AnyPointer);
}

interface Closer {
  # Later sends fail; buffered values are still delivered. Closing twice fails.
  close @0 () -> ();
}

interface Chan extends(Sender, Recver, Closer) {
  sender @0 () -> (sender :Sender);
  recver @1 () -> (recver :Recver);
  closer @2 () -> (closer :Closer);
}
