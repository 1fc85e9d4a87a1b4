-- A/B tests: the arm expansion gave each recipient (NULL when the campaign has no test).
-- A nullable column without a default is a catalogue change only, however big the table.
ALTER TABLE recipients ADD COLUMN variant smallint;
