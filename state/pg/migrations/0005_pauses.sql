-- Schema 5: people's pauses (the self-service page's "pause"), keyed by
-- Entra object id (state.Pause.ID), shared by every replica: a standby
-- writes one, the leader's engine reads them every few seconds. Keys and
-- records as in every other table (0001_initial.sql).
CREATE TABLE pauses (
    key    bytea NOT NULL,
    record bytea NOT NULL
);
CREATE UNIQUE INDEX pauses_key ON pauses (sha256(key));
