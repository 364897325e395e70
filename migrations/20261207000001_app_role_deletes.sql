-- The API deletes rows from these tables: the registry's and the detector's work queues once a
-- batch is folded in, allow-list entries and safe zones an operator removes. The compose init
-- script gives the app role SELECT, INSERT, UPDATE on every table by default and DELETE nowhere,
-- so without this the registry and the detector never ran in the stack ("permission denied for
-- table registry_queue"). DELETE stays off the detections and the registry itself.
-- Every table's grants for the app role are listed in tests/api/grants.rs; the suite runs the API
-- as this role, so a table the API deletes from without a grant fails a test.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_app') THEN
        GRANT DELETE ON sigint.registry_queue, sigint.following_queue, sigint.allowlist, sigint.safe_zones
            TO shadowcheck_app;
    END IF;
END
$$;
