"""Real servers on loopback for tests and ``make demo``: kube-apiserver + etcd, Kubo, MinIO.

Binaries come from :mod:`.tools` (built once from the Go module proxy into a version-keyed cache,
or given by environment variables). Every server runs in its own process group with its log in
its work directory, on free loopback ports, and is stopped -- group and all -- on exit.
"""
