"""Operations (OMS): accounts and roles, the REST API, the web dashboard, metrics, reports.

The entry-point layer: it may import every other dpps package and none may import it.
"""
