"""pinsync: a Kubernetes operator that keeps IPFS pins replicated to storage backends."""

GROUP = "pinsync.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
