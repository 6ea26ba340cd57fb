"""The claims' verdict vocabulary (issue 28), torch-free: the words every layer that shows a scorecard
uses. The rule that gives them is `ncbench.claims.verdicts`.

*reproduced* (the interval lies on the claimed side of the threshold), *contradicted* (on the other
side of the paper's null), *weaker than claimed* (right direction, ncbench's own threshold not met),
*inconclusive* (none of these, or too few seeds), *not applicable* (a precondition of the paper's
statement failed; the reason names it).
"""
REPRODUCED, CONTRADICTED, WEAKER = "reproduced", "contradicted", "weaker than claimed"
INCONCLUSIVE, NOT_APPLICABLE = "inconclusive", "not applicable"
VERDICTS = (REPRODUCED, CONTRADICTED, WEAKER, INCONCLUSIVE, NOT_APPLICABLE)
