-- The detector's level as an enum, as it is in Rust (`following::Level`): the database refuses
-- a level that does not exist, and orders levels by severity (`ORDER BY level DESC` puts
-- alerts first, `level >= 'suspicious'` means what it says). Queries read it back as text.
CREATE TYPE sigint.follow_level AS ENUM ('none', 'watch', 'suspicious', 'alert');

ALTER TABLE sigint.following DROP CONSTRAINT IF EXISTS following_level_check;
ALTER TABLE sigint.following
    ALTER COLUMN level TYPE sigint.follow_level USING level::sigint.follow_level;

ALTER TABLE sigint.transmitters ALTER COLUMN level DROP DEFAULT;
ALTER TABLE sigint.transmitters
    ALTER COLUMN level TYPE sigint.follow_level USING level::sigint.follow_level;
ALTER TABLE sigint.transmitters ALTER COLUMN level SET DEFAULT 'none';
