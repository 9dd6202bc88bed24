-- Schema 7: the ICS feeds people add on their self-service page, keyed by
-- a random id (state.OwnFeed.ID); the record holds the URL sealed, never
-- in clear. Shared by every replica like the pauses (0005_pauses.sql).
CREATE TABLE own_feeds (
    key    bytea NOT NULL,
    record bytea NOT NULL
);
CREATE UNIQUE INDEX own_feeds_key ON own_feeds (sha256(key));
