-- ColonyFS metadata (§7): one row per file revision; the bytes live in an object store.
-- seqnr comes from one global sequence; ref is the wire Ref as JSON.
CREATE SEQUENCE file_seq;
CREATE TABLE files (
    seqnr BIGINT PRIMARY KEY DEFAULT nextval('file_seq'),
    file_id TEXT NOT NULL UNIQUE,
    colony_name TEXT NOT NULL,
    label TEXT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    checksum TEXT NOT NULL,
    checksum_alg TEXT NOT NULL,
    ref TEXT NOT NULL,
    added BIGINT NOT NULL
);
CREATE INDEX files_by_label ON files (colony_name, label COLLATE "C", name COLLATE "C", seqnr);

-- file_ids: the frozen revision ids as a JSON array.
CREATE TABLE snapshots (
    snapshot_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    label TEXT NOT NULL,
    name TEXT NOT NULL,
    file_ids TEXT NOT NULL,
    added BIGINT NOT NULL,
    UNIQUE (colony_name, name)
);
