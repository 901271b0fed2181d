-- The admin's live view reads the newest rows by their sequence id. A BRIN
-- index finds them at a fraction of a B-tree's cost on every insert: ids
-- grow with the table, so each block range holds a narrow span of them.
CREATE INDEX events_id_brin ON events USING brin (id);
