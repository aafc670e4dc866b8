"""``kubectl pinsync``: commands that drive a running operator through annotations and status.

:mod:`views` and :mod:`waiting` are pure (what to show; when a request is answered);
:mod:`render` prints; :mod:`sessions` resolves the cluster, namespace and objects;
:mod:`following` polls until requests are answered; :mod:`commands` parses arguments and runs
them, talking to the API only through :mod:`pinsync.kube`.
"""
