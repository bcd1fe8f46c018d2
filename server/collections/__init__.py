"""Collections (DESIGN.md §9): the receivables ledger, payments and their allocation, aging.

``repo`` holds every SQL statement of the package; ``payments`` and ``aging`` are the
services the HTTP resources (``server.http.collections``) and the verbs (``payment``,
``aging``) call with a pool.
"""
