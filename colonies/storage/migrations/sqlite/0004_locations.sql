-- Locations (§7.1): named sites executors sit at; an executor refers to one by name (executors.location_name).
CREATE TABLE locations (
    location_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    long REAL NOT NULL,
    lat REAL NOT NULL,
    UNIQUE (colony_name, name)
);
