-- Blueprints (§3, §7.1): definitions (a kind, its JSON schema and handler), blueprints (desired state in
-- `spec`, observed state in `status`, kept apart so a status report never rewrites the spec), and the
-- history of spec changes. JSON columns hold the wire shape; the key columns are copies for lookups.
ALTER TABLE executors ADD COLUMN blueprint_id TEXT NOT NULL DEFAULT '';
ALTER TABLE executors ADD COLUMN blueprint_gen BIGINT NOT NULL DEFAULT 0;

CREATE TABLE blueprint_definitions (
    definition_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (colony_name, name),
    UNIQUE (colony_name, kind)
);

CREATE TABLE blueprints (
    blueprint_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    location_name TEXT NOT NULL,
    generation BIGINT NOT NULL,
    data TEXT NOT NULL,
    status TEXT,
    UNIQUE (colony_name, name)
);
CREATE INDEX blueprints_by_kind ON blueprints (colony_name, kind, location_name);

CREATE TABLE blueprint_history (
    seq BIGSERIAL PRIMARY KEY,
    history_id TEXT NOT NULL UNIQUE,
    blueprint_id TEXT NOT NULL,
    colony_name TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX blueprint_history_by_blueprint ON blueprint_history (blueprint_id, seq);
CREATE INDEX blueprint_history_by_colony ON blueprint_history (colony_name);
