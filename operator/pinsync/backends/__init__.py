"""Storage backends: one module per backend type, one small protocol (:mod:`.base`).

Backends never import the operator's handlers or each other; the registry maps a
``StorageBackend.spec.type`` to the module that implements it.
"""
