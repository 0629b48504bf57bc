"""The judge stage: a second model scores each draft against a versioned rubric; policies turn scores into
review decisions (review/policy.py). See judging/criteria.py for the criteria and the overall score."""
