"""Applications built on the library: the ``cqrs`` command line (:mod:`.cli`).

Nothing here is imported by the core, the store or the integrations; each app needs
its own extra (``[cli]``).
"""
