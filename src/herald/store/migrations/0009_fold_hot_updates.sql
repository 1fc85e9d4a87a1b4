-- The status fold rewrites a run of neighbouring recipient rows in one transaction (callbacks
-- come in send order), and a page's old row versions cannot be pruned before that
-- transaction ends. At fillfactor 80 the page's free fifth filled up after a fifth of its
-- rows, and the rest were updated with new index entries (not HOT). Half the page free
-- holds a new version of every row on it: each fold's update stays on its page, and the
-- next fold prunes the versions the last one left. Rows written from now on get the room.
ALTER TABLE recipients SET (fillfactor = 50);
