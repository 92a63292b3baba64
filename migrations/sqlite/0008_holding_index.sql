-- One index answers both the projector's reads of a post's current tenures and ListHolders.
-- The projector reads current, not withdrawn versions of a post (open ones first, ended ones
-- when a decision needs them); ListHolders asks for the open ones and those ending after D.
-- With end_date in the key, both are range reads of this index (end_date IS NULL, or
-- end_date > D), and start_date in it filters without visiting the table: at 1M events a
-- head post has hundreds of ended tenures, and the old (organization, post) indexes made
-- ListHolders read every one of them. It replaces both indexes of 0007: one index less to
-- write on every tenure version.
DROP INDEX rm_tenures_current_post;
DROP INDEX rm_tenures_open_post;
CREATE INDEX rm_tenures_holding ON rm_tenures (organization, post, end_date, start_date)
    WHERE version_to IS NULL AND withdrawn_position IS NULL;
