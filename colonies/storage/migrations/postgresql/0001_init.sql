-- Colonies schema, version 1 (PostgreSQL). Times are Unix nanoseconds (BIGINT); 0 means unset.
-- JSON values are stored as TEXT, byte-identical to what the SQLite backend stores (see storage/rows.py).
CREATE TABLE server (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    server_id TEXT NOT NULL
);

CREATE TABLE colonies (
    name TEXT PRIMARY KEY,
    colony_id TEXT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE executors (
    colony_name TEXT NOT NULL,
    name TEXT NOT NULL,
    executor_id TEXT NOT NULL,
    executor_type TEXT NOT NULL,
    state INTEGER NOT NULL,
    require_func_reg BOOLEAN NOT NULL DEFAULT FALSE,
    commission_time BIGINT NOT NULL,
    last_heard BIGINT NOT NULL DEFAULT 0,
    location_name TEXT NOT NULL DEFAULT '',
    capabilities TEXT,
    allocations TEXT,
    PRIMARY KEY (colony_name, name)
);
CREATE INDEX executors_by_id ON executors (executor_id);

CREATE TABLE users (
    colony_name TEXT NOT NULL,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (colony_name, name)
);
CREATE INDEX users_by_id ON users (user_id, colony_name);

CREATE TABLE processes (
    process_id TEXT PRIMARY KEY,
    seq BIGSERIAL,
    colony_name TEXT NOT NULL,
    executor_type TEXT NOT NULL,
    state INTEGER NOT NULL,
    is_assigned BOOLEAN NOT NULL DEFAULT FALSE,
    assigned_executor_id TEXT NOT NULL DEFAULT '',
    targeted BOOLEAN NOT NULL DEFAULT FALSE,
    location_name TEXT NOT NULL DEFAULT '',
    cpu BIGINT NOT NULL DEFAULT 0,
    mem BIGINT NOT NULL DEFAULT 0,
    priority_time BIGINT NOT NULL,
    submission_time BIGINT NOT NULL,
    start_time BIGINT NOT NULL DEFAULT 0,
    end_time BIGINT NOT NULL DEFAULT 0,
    wait_deadline BIGINT NOT NULL DEFAULT 0,
    exec_deadline BIGINT NOT NULL DEFAULT 0,
    max_exec_time BIGINT NOT NULL DEFAULT -1,
    max_wait_time BIGINT NOT NULL DEFAULT -1,
    max_retries BIGINT NOT NULL DEFAULT 0,
    retries BIGINT NOT NULL DEFAULT 0,
    wait_for_parents BOOLEAN NOT NULL DEFAULT FALSE,
    parents TEXT NOT NULL DEFAULT '[]',
    children TEXT NOT NULL DEFAULT '[]',
    processgraph_id TEXT NOT NULL DEFAULT '',
    initiator_id TEXT NOT NULL DEFAULT '',
    initiator_name TEXT NOT NULL DEFAULT '',
    label TEXT NOT NULL DEFAULT '',
    funcname TEXT NOT NULL DEFAULT '',
    input TEXT,
    output TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    spec TEXT NOT NULL
);
-- The assign queue (§8.3): untargeted, assignable processes in (priority, FIFO) order. Claim walks it
-- with FOR UPDATE SKIP LOCKED, so the cost does not grow with the queue length.
CREATE INDEX processes_queue ON processes (colony_name, executor_type, priority_time)
    WHERE state = 0 AND NOT wait_for_parents AND NOT targeted;
CREATE INDEX processes_exec_deadline ON processes (exec_deadline) WHERE state = 1 AND exec_deadline > 0;
CREATE INDEX processes_wait_deadline ON processes (wait_deadline) WHERE state = 0 AND wait_deadline > 0;
CREATE INDEX processes_running_by_executor ON processes (assigned_executor_id) WHERE state = 1;
CREATE INDEX processes_by_state_prio ON processes (colony_name, state, priority_time);
CREATE INDEX processes_by_state_start ON processes (colony_name, state, start_time);
CREATE INDEX processes_by_state_end ON processes (colony_name, state, end_time);
CREATE INDEX processes_by_submission ON processes (colony_name, submission_time);
CREATE INDEX processes_by_graph ON processes (processgraph_id) WHERE processgraph_id != '';

-- Targeted processes (conditions.executornames): one row per name while the process is WAITING.
CREATE TABLE process_targets (
    colony_name TEXT NOT NULL,
    executor_name TEXT NOT NULL,
    priority_time BIGINT NOT NULL,
    process_id TEXT NOT NULL,
    PRIMARY KEY (colony_name, executor_name, priority_time, process_id)
);
CREATE INDEX process_targets_by_process ON process_targets (process_id);

-- The append-only audit trail of every process.
CREATE TABLE process_events (
    seq BIGSERIAL PRIMARY KEY,
    process_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX process_events_by_process ON process_events (process_id, seq);

CREATE TABLE attributes (
    attribute_id TEXT PRIMARY KEY,
    target_id TEXT NOT NULL,
    colony_name TEXT NOT NULL,
    processgraph_id TEXT NOT NULL DEFAULT '',
    attribute_type INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    added BIGINT NOT NULL
);
CREATE INDEX attributes_by_target ON attributes (target_id);

CREATE TABLE functions (
    function_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    executor_name TEXT NOT NULL,
    executor_type TEXT NOT NULL,
    funcname TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    args TEXT,
    location_name TEXT NOT NULL DEFAULT '',
    counter BIGINT NOT NULL DEFAULT 0,
    min_wait DOUBLE PRECISION NOT NULL DEFAULT 0,
    max_wait DOUBLE PRECISION NOT NULL DEFAULT 0,
    min_exec DOUBLE PRECISION NOT NULL DEFAULT 0,
    max_exec DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_wait DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_exec DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX functions_by_executor ON functions (colony_name, executor_name, funcname);

CREATE TABLE processgraphs (
    processgraph_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    roots TEXT NOT NULL DEFAULT '[]',
    state INTEGER NOT NULL,
    submission_time BIGINT NOT NULL,
    start_time BIGINT NOT NULL DEFAULT 0,
    end_time BIGINT NOT NULL DEFAULT 0,
    initiator_id TEXT NOT NULL DEFAULT '',
    initiator_name TEXT NOT NULL DEFAULT ''
);
CREATE INDEX processgraphs_by_colony ON processgraphs (colony_name, state, submission_time);

CREATE TABLE generators (
    generator_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    name TEXT NOT NULL,
    workflow_spec TEXT NOT NULL,
    trigger_count BIGINT NOT NULL,
    timeout BIGINT NOT NULL,
    first_pack BIGINT NOT NULL DEFAULT 0,
    last_run BIGINT NOT NULL DEFAULT 0,
    initiator_id TEXT NOT NULL DEFAULT '',
    initiator_name TEXT NOT NULL DEFAULT '',
    UNIQUE (colony_name, name)
);

CREATE TABLE generator_args (
    seq BIGSERIAL PRIMARY KEY,
    generator_id TEXT NOT NULL,
    colony_name TEXT NOT NULL,
    arg TEXT NOT NULL
);
CREATE INDEX generator_args_by_generator ON generator_args (generator_id, seq);

CREATE TABLE crons (
    cron_id TEXT PRIMARY KEY,
    colony_name TEXT NOT NULL,
    name TEXT NOT NULL,
    cron_expression TEXT NOT NULL DEFAULT '',
    interval_s BIGINT NOT NULL DEFAULT 0,
    random BOOLEAN NOT NULL DEFAULT FALSE,
    next_run BIGINT NOT NULL DEFAULT 0,
    last_run BIGINT NOT NULL DEFAULT 0,
    workflow_spec TEXT NOT NULL,
    prev_processgraph_id TEXT NOT NULL DEFAULT '',
    wait_for_prev_processgraph BOOLEAN NOT NULL DEFAULT FALSE,
    initiator_id TEXT NOT NULL DEFAULT '',
    initiator_name TEXT NOT NULL DEFAULT '',
    UNIQUE (colony_name, name)
);

CREATE TABLE logs (
    seq BIGSERIAL PRIMARY KEY,
    process_id TEXT NOT NULL DEFAULT '',
    colony_name TEXT NOT NULL,
    executor_name TEXT NOT NULL DEFAULT '',
    ts BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX logs_by_process ON logs (process_id, ts);
CREATE INDEX logs_by_executor ON logs (colony_name, executor_name, ts);
CREATE INDEX logs_by_colony_ts ON logs (colony_name, ts);
