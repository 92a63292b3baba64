-- What an in-process read model (projections/resident.rs) reads to catch up from one
-- checkpoint to the next: tenure versions by the position that made them current, and the
-- names recorded since. Without these each refresh would scan the tables.
CREATE INDEX rm_tenures_version_from ON rm_tenures (version_from);
CREATE INDEX rm_organizations_first_position ON rm_organizations (first_position);
CREATE INDEX rm_organization_aliases_first_position ON rm_organization_aliases (first_position);
CREATE INDEX rm_posts_first_position ON rm_posts (first_position);
