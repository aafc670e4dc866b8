"""Level-based reconcilers: read the object, compute its status, write what changed.

They are plain async functions of (context, namespace, name) so that tests and the kopf glue in
:mod:`pinsync.handlers` call them the same way.
"""
