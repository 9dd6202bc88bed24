-- Schema 3: the webhook inbox. Every 2 s the leader reads the signals
-- standbys queued (those whose key begins "inbox:", state.QueuedPrefix). A
-- column says which rows those are, and a partial index holds them alone,
-- so that the read costs the inbox, not the whole table of signals in
-- force.
--
-- The column is computed from the key (its first 6 bytes are "inbox:"), so
-- no writer has to set it and the rows already stored are right at once.
ALTER TABLE signals ADD COLUMN queued boolean NOT NULL
    GENERATED ALWAYS AS (substring(key FROM 1 FOR 6) = 'inbox:'::bytea) STORED;
CREATE INDEX signals_queued ON signals (sha256(key)) WHERE queued;
