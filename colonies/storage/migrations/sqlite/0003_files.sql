-- ColonyFS metadata (§7): one row per file revision; the bytes live in an object store.
-- seqnr is the one global sequence (AUTOINCREMENT never reuses a value); ref is the wire Ref as JSON.
CREATE TABLE files (
    seqnr INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id TEXT NOT NULL UNIQUE,
    colony_name TEXT NOT NULL,
    label TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    checksum_alg TEXT NOT NULL,
    ref TEXT NOT NULL,
    added INTEGER NOT NULL
);
CREATE INDEX files_by_label ON files (colony_name, label, name, seqnr);

-- file_ids: the frozen revision ids as a JSON array.
CREATE TABLE snapshots (
    snapshot_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    label TEXT NOT NULL,
    name TEXT NOT NULL,
    file_ids TEXT NOT NULL,
    added INTEGER NOT NULL,
    UNIQUE (colony_name, name)
);
