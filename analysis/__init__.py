"""Analysis of tagged files: the survey report (problem shares, sentiment, groups, trend, charts)."""
