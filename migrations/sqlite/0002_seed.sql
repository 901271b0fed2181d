-- The categories and event types the demo website and the original service used.
INSERT INTO categories (name, description, active, strict, created_at) VALUES
    ('page interaction', 'Page views and clicks on a page', 1, 1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    ('form interaction', 'Form submissions', 1, 1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));

INSERT INTO event_types (category_id, name, description, schema, created_at)
SELECT c.id, t.name, t.description, t.schema, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
FROM (
    SELECT 'page interaction' AS category, 'pageview' AS name, 'A page was shown' AS description,
        '{"type":"object","required":["host","path"],"properties":{"host":{"type":"string"},"path":{"type":"string"}}}' AS schema
    UNION ALL
    SELECT 'page interaction', 'banner image click', 'The banner image was clicked',
        '{"type":"object","required":["host","path"],"properties":{"host":{"type":"string"},"path":{"type":"string"}}}'
    UNION ALL
    SELECT 'form interaction', 'submit', 'A form was submitted; its fields are in data.form',
        '{"type":"object","required":["host","path","form"],"properties":{"host":{"type":"string"},"path":{"type":"string"},"form":{"type":"object"}}}'
) AS t
JOIN categories c ON c.name = t.category;
