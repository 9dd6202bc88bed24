-- Schema 1: one table per bucket of the bbolt file (state/state.go), holding
-- the same bytes.
--
-- Keys are bytea, as bbolt's are: they come from outside (addresses in
-- feeds, webhook payloads), and text would refuse a NUL byte or bytes that
-- are not UTF-8. They are unique by their SHA-256 rather than by themselves:
-- a B-tree entry holds at most ~2.7 KB, and a long key must be stored, not
-- refused.
--
-- Records are the JSON the bbolt store writes, kept as bytea rather than
-- jsonb: jsonb refuses "\u0000", which Go writes for a NUL in a string from
-- a feed, so one odd event could fail a whole batch; nothing queries inside
-- a record; and a record read back is exactly what was written, so one that
-- does not decode is reported like bbolt reports it. For a look by hand:
-- SELECT convert_from(key, 'UTF8'), convert_from(record, 'UTF8')::jsonb FROM sessions;

-- The presence sessions held (and the intents recorded before each Graph
-- call), keyed by Entra object id (state.Session.Key).
CREATE TABLE sessions (
    key    bytea NOT NULL,
    record bytea NOT NULL
);
CREATE UNIQUE INDEX sessions_key ON sessions (sha256(key));

-- What Entra said of each calendar address, keyed by the normalised address.
CREATE TABLE identities (
    key    bytea NOT NULL,
    record bytea NOT NULL
);
CREATE UNIQUE INDEX identities_key ON identities (sha256(key));

-- The last good copy of each feed: its metadata (JSON) and its body, gzip.
CREATE TABLE feeds (
    source bytea NOT NULL,
    record bytea NOT NULL,
    body   bytea NOT NULL
);
CREATE UNIQUE INDEX feeds_source ON feeds (sha256(source));
-- The body is gzip already: stored out of line without compressing it again.
ALTER TABLE feeds ALTER COLUMN body SET STORAGE EXTERNAL;

-- Live meeting signals, keyed by state.Signal.ID.
CREATE TABLE signals (
    key    bytea NOT NULL,
    record bytea NOT NULL
);
CREATE UNIQUE INDEX signals_key ON signals (sha256(key));
