"""The observing night as a scenario (UC-000-4, ``dpps night``).

``acquisition`` plays the site (ACADA writes a night, the ingestion queue takes it, rounds of
the rule evaluator and the transfer daemon replicate it), ``run`` plays the whole night with
the category-B processing of ``dpps.pipelines.night``, ``report`` reads back what it left.
"""
