-- The registry updater's running sums and sample as 1 KiB of bytes instead of a ~2.5 KB JSON
-- document of numbers: the document dominated each upsert (parsing 192 numerics, TOAST).
-- Rows written before keep their JSON until they are next updated.
ALTER TABLE sigint.transmitters
    ADD COLUMN estimate_bin bytea,
    ALTER COLUMN estimate DROP NOT NULL;
