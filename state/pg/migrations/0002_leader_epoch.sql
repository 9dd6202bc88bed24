-- Schema 2: the leader epoch, a fencing token for the replicas' writes.
--
-- A replica that takes the lead (the advisory lock, package leader) first
-- advances the epoch, and every write it makes as leader checks, in its own
-- transaction, that the epoch is still the one it took
-- (calpresence_fence). Once a later leader has advanced it, the writes of
-- an earlier one are refused: a write in flight as the lock went, or a
-- process frozen and resumed, cannot undo what the new leader recorded (a
-- late DeleteSession hiding the session it had just set). Standbys write
-- unchecked: the webhook inbox is theirs.
CREATE TABLE leader_epoch (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one), -- a single row
    epoch    bigint NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO leader_epoch (epoch) VALUES (0);

-- calpresence_fence(writer) raises SQLSTATE CPF01 unless the epoch is
-- writer. It holds a share lock on the epoch's row to the end of the
-- transaction: a take-over (an UPDATE of the row) waits for a write that
-- passed the check to commit, and a check waits for a take-over under way,
-- then sees its epoch.
CREATE FUNCTION calpresence_fence(writer bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
BEGIN
    SELECT epoch INTO current FROM leader_epoch FOR SHARE;
    IF current IS DISTINCT FROM writer THEN
        RAISE EXCEPTION 'leader epoch % is over: epoch % leads now', writer, current
            USING ERRCODE = 'CPF01';
    END IF;
END
$$;
