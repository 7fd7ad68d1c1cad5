# Records: the cluster's DHT of signed, immutable records (see src/records).
# Every host serves its share; a record lives on the k hosts whose ids hash
# closest to its key, and holders pass it on as the view changes.
@0x9c585e88491d97ab;

interface Records {
  # Keeps `record` (checked: format, signature, age, bounds) under its key.
  put @0 (record :Data) -> ();

  # The record held under `key` (32 bytes), if any.
  get @1 (key :Data) -> (record :Data, found :Bool);
}
