-- Schema 6: the calls people declare on their self-service page ("I'm on a
-- call"), keyed by Entra object id (state.OwnCall.ID), shared by every
-- replica like the pauses (0005_pauses.sql).
CREATE TABLE own_calls (
    key    bytea NOT NULL,
    record bytea NOT NULL
);
CREATE UNIQUE INDEX own_calls_key ON own_calls (sha256(key));
