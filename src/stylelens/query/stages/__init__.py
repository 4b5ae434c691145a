"""The stages of a query, one function per file, in the order ``query.pipeline`` runs them:

    locate → cut out → embed → neighbours → filter → identify → personalise → rank → diversify → hydrate

Each takes explicit values (the ``Photo``, an ``Item``, the ``SearchRequest``, the call's ``Snapshot``) and
returns the next; none is handed the ``Index``. ``locate`` may find several items; every later stage runs
per item. A new stage (a garment parser as the locator, a re-ranker) is one function in one file here,
called from ``query.pipeline``.
"""
