-- Threats as they appear: one row each time a (transmitter, capture device) pair rises to
-- `suspicious` or `alert`, written in the scorer's own transaction, so a warning is never lost
-- between the score and the people who must hear of it. Open pages read them as server-sent
-- events (`Last-Event-ID` is the id); the notification sinks (webhook, ntfy) deliver them in
-- order, each from its own cursor.
CREATE TABLE sigint.threat_events (
    id            bigserial PRIMARY KEY,
    radio         sigint.signal_type NOT NULL,
    identifier    text NOT NULL,
    device_id     uuid NOT NULL,
    level         sigint.follow_level NOT NULL,
    level_before  sigint.follow_level,
    score         real NOT NULL,
    tracker_class text,
    summary       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- How far each sink has delivered, and what it gave up on.
CREATE TABLE sigint.notification_cursors (
    sink          text PRIMARY KEY,
    last_event_id bigint NOT NULL,
    delivered     bigint NOT NULL DEFAULT 0,
    dead_letters  bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Events a sink could not deliver after every retry: kept to be looked at, counted above.
CREATE TABLE sigint.notification_dead_letters (
    sink       text NOT NULL,
    event_id   bigint NOT NULL,
    attempts   integer NOT NULL,
    last_error text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, event_id)
);
