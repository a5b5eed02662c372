"""The archive's state machines, one module each: ``replicas`` and ``rules``.

Every change of a replica's or a rule's state goes through a function of these modules, which
writes the event and the rule bookkeeping that goes with it (``bdms/README.md``). They take the
caller's session and never commit, like the rest of the core.
"""
