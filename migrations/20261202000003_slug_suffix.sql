-- Finding the next free suffix of a derived user slug (api.md section 2) with one bounded
-- index read instead of fetching every claim that starts with the base.
--
-- User slugs are unique across the installation, so the candidates of a common base (and
-- every name with no letter or digit shares the base `user`) can number as many as there are
-- users. A claim `<stem>-<n>` is indexed by its stem and the number `n`, so the lookup after
-- a collision (`EventStore::taken_user_slug_candidates`) reads the lowest few claimed suffixes
-- of one stem and the highest one: at most a fixed number of index entries, however many
-- `user-N` there are.
--
-- The expressions are written out again, character for character, in that query: the planner
-- matches index expressions and the partial predicate textually. The predicate is written
-- with literals (never parameters) in the query too, so a prepared statement's generic plan
-- can still prove it.
--
-- Only suffixes of 1 to 18 digits without a leading zero are indexed: those are the ones the
-- derivation produces (`-1`, `-2`, …), and 18 digits always fit a bigint, so the cast can
-- never fail an insert (a 19-digit suffix given explicitly is just not indexed, and no
-- derivation would reach it). The regular expression `^(.*)-…$` is greedy, so the stem of
-- `john-smith-2-3` is `john-smith-2` and its suffix 3.
--
-- A plain CREATE INDEX holds writes on `claims` for as long as the build takes (seconds for
-- millions of claims); an installation that cannot pause user creation that long builds it
-- CONCURRENTLY by hand first, under this name, and this migration then does nothing.
CREATE INDEX IF NOT EXISTS claims_user_slug_suffix ON claims (
    (substring(value FROM '^(.*)-[1-9][0-9]{0,17}$')),
    ((substring(value FROM '-([1-9][0-9]{0,17})$'))::bigint)
) WHERE kind = 'user-slug' AND scope = '' AND value ~ '-[1-9][0-9]{0,17}$';
