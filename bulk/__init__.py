"""Bulk scoring of whole books of claims, on one machine (pandas) or on Apache Spark.

`claimtriage score-bulk` reads a claims file or a directory of part files, validates every claim
(invalid rows go to a side output with their reasons), builds the features with each claim's
point-in-time history over the whole input, applies a registered bundle and writes one row per
claim. Both engines apply the bundle through the same code (`bulk.scoring`), so for the same
claims they write the same decisions, scores and reasons.
"""
