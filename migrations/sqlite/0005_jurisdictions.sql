-- Jurisdictions that issued notices naming organizations: a tiny read model, so that a
-- query for a relative name (市教育体育局) can qualify it by every jurisdiction without
-- scanning rm_organizations. Derived like every rm_* table (rebuild fills it).
CREATE TABLE rm_jurisdictions (
    jurisdiction TEXT PRIMARY KEY
);
INSERT INTO rm_jurisdictions (jurisdiction)
SELECT DISTINCT jurisdiction FROM rm_organizations WHERE jurisdiction IS NOT NULL;
