-- The admin's live view reads the newest rows by rowid, which SQLite keys
-- its tables by already; nothing to add. (PostgreSQL adds a BRIN index.)
SELECT 1;
