-- What the in-process read model (projections/resident.rs) reads of persons to catch up
-- from one checkpoint to the next: records created, and records merged, in between.
CREATE INDEX rm_persons_first_position ON rm_persons (first_position);
CREATE INDEX rm_persons_merged_position ON rm_persons (merged_position);
