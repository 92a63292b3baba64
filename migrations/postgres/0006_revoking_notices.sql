-- Few notices revoke others, but every ingest asks whether one of them revoked the new notice
-- earlier (`Queries::notices_revoking`). Without this index that question read every notice
-- row, source text included: ingest slowed down in proportion to the registry's size.
CREATE INDEX rm_notices_revoking ON rm_notices (recorded_position) WHERE revokes <> '[]';
