-- The categories and event types the demo website and the original service used.
INSERT INTO categories (name, description, active, strict) VALUES
    ('page interaction', 'Page views and clicks on a page', TRUE, TRUE),
    ('form interaction', 'Form submissions', TRUE, TRUE);

INSERT INTO event_types (category_id, name, description, schema)
SELECT c.id, t.name, t.description, t.schema::jsonb
FROM (VALUES
    ('page interaction', 'pageview', 'A page was shown',
     '{"type":"object","required":["host","path"],"properties":{"host":{"type":"string"},"path":{"type":"string"}}}'),
    ('page interaction', 'banner image click', 'The banner image was clicked',
     '{"type":"object","required":["host","path"],"properties":{"host":{"type":"string"},"path":{"type":"string"}}}'),
    ('form interaction', 'submit', 'A form was submitted; its fields are in data.form',
     '{"type":"object","required":["host","path","form"],"properties":{"host":{"type":"string"},"path":{"type":"string"},"form":{"type":"object"}}}')
) AS t (category, name, description, schema)
JOIN categories c ON c.name = t.category;
