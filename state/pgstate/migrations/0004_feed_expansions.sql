-- Schema 4: each feed copy's occurrences as the engine last expanded them
-- (state.EncodeExpansion), kept beside the copy so that a restart
-- reconciles from them before any copy is parsed again. NULL: none kept;
-- the copy is parsed at start, as before.
ALTER TABLE feeds ADD COLUMN expansion bytea;
