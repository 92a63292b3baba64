-- The projector reads a post's current tenure versions (`version_to IS NULL`), mostly the open
-- ones. Through `rm_tenures_post` that read visited every version of every tenure the post
-- ever had: at 1M events ingest spent its time in those row reads. These partial indexes hold
-- only current versions (and only open ones), so the read is proportional to the answer.
CREATE INDEX rm_tenures_current_post ON rm_tenures (organization, post)
    WHERE version_to IS NULL;
CREATE INDEX rm_tenures_open_post ON rm_tenures (organization, post)
    WHERE version_to IS NULL AND end_date IS NULL AND ended_position IS NULL;
