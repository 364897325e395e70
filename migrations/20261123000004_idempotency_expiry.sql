-- Idempotency keys are kept for a day (the API purges older ones), so the API role must be able
-- to delete from that one table. In compose the role exists; elsewhere there is nothing to grant.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shadowcheck_app') THEN
        GRANT DELETE ON sigint.idempotency_keys TO shadowcheck_app;
    END IF;
END
$$;
