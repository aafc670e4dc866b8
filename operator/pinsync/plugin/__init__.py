"""``kubectl pinsync``: commands that drive a running operator through annotations and status.

:mod:`views` and :mod:`waiting` are pure (what to show, when a request is answered);
:mod:`render` prints; :mod:`commands` parses arguments and talks to the API through
:mod:`pinsync.kube`.
"""
