"""The ``pinsync`` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys

import prometheus_client

from pinsync import kube, peering
from pinsync.settings import Settings

logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> None:
    # Imported here: kopf (and the handlers) take most of a second to import, which every
    # `kubectl pinsync` command would otherwise pay.
    import kopf

    if args.kubeconfig:
        # kopf's own login reads the same variable, so both clients see one cluster.
        os.environ["KUBECONFIG"] = args.kubeconfig
    kube.load_config(args.kubeconfig)
    quiet_clients(args.verbose)
    import pinsync.handlers  # noqa: F401  (registers the handlers)

    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_addr)

    namespaces = args.namespace or list(Settings.from_env().namespaces)
    settings = kopf.OperatorSettings()
    settings.peering.lifetime = args.peering_lifetime
    if namespaces and peering.served_names(namespaces) == namespaces:
        # Names, not patterns: nothing to discover. kopf would list and watch all namespaces,
        # which the namespaced RBAC does not grant, retrying for a minute before it falls back
        # to these names (CRDs are then listed once, at start, too).
        settings.scanning.disabled = True
    name = peering.pod_name()
    priority = args.priority if args.priority is not None else peering.priority_of(name)
    if args.peering:
        try:
            created = asyncio.run(peering.prepare(kube.Api(), args.peering, namespaces))
        except kube.PeeringUnavailable as exc:
            raise SystemExit(f"pinsync: peering {args.peering!r}: {exc}") from None
        for where in created:
            logger.info("created peering %r %s", args.peering, where or "cluster-wide")
        logger.info("peering %r as %s, priority %d", args.peering, name, priority)
    else:
        logger.info("standalone (no --peering): run a single replica only")
    asyncio.run(
        kopf.operator(
            settings=settings,
            standalone=not args.peering,
            peering_name=args.peering,
            priority=priority,
            identity=peering.identity(),  # type: ignore[arg-type]  # kopf's NewType over str
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
        )
    )


def quiet_clients(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    # Client libraries log request details (headers, signatures, bodies) at DEBUG; they stay
    # at WARNING even with -v so that nothing credential-derived reaches the operator's log.
    for noisy in (
        "botocore",
        "aiobotocore",
        "urllib3",
        "asyncssh",
        "aioftp",
        "httpx",
        "httpcore",
        "httpx2",
        "huggingface_hub",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def work(args: argparse.Namespace) -> None:
    from pinsync import worker

    kube.load_config(args.kubeconfig)
    quiet_clients(args.verbose)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_addr)
    settings = Settings.from_env()
    if args.namespace:
        settings = dataclasses.replace(settings, namespaces=tuple(args.namespace))
    near = args.near or [u for u in os.environ.get("PINSYNC_NEAR_KUBO", "").split(",") if u]

    async def serve() -> None:
        from pinsync import liveness

        crew = worker.Worker(
            kube.Api(),
            settings,
            identity=args.identity or worker.default_identity(),
            max_shards=args.max_shards,
            near=near,
        )
        probe = await liveness.serve(args.liveness) if args.liveness else None
        try:
            await worker.serve(crew)
        finally:
            if probe is not None:
                await probe.cleanup()

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> None:
    # Run as kubectl-pinsync, kubectl's plugin: usage lines then read "kubectl pinsync ...".
    plugin = os.path.basename(sys.argv[0]).startswith("kubectl-")
    prog = "kubectl pinsync" if plugin else "pinsync"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run the operator against a cluster")
    run_cmd.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    run_cmd.add_argument(
        "-n", "--namespace", action="append", help="serve only this namespace (repeatable)"
    )
    run_cmd.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run_cmd.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    run_cmd.add_argument("--metrics-addr", default="0.0.0.0", help="address for --metrics-port")
    run_cmd.add_argument(
        "--peering",
        metavar="NAME",
        help="run as one of several replicas: the one with the highest priority in the kopf "
        "peering object NAME works, the others stand by (created if missing; without this "
        "option the operator runs standalone and must be the only one)",
    )
    run_cmd.add_argument(
        "--priority",
        type=int,
        help=f"peering priority (default: derived from ${peering.POD_NAME} or the hostname, "
        f"1..{peering.MAX_DERIVED}; higher works)",
    )
    run_cmd.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        metavar="SECONDS",
        help="a peer silent this long counts as gone and its standby takes over (default: 60)",
    )
    run_cmd.add_argument("-v", "--verbose", action="store_true")
    run_cmd.set_defaults(func=run)
    work_cmd = commands.add_parser(
        "worker",
        help="transfer pins for the operator: claim shards of its plans through Leases",
    )
    work_cmd.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    work_cmd.add_argument(
        "-n", "--namespace", action="append", help="work only in this namespace (repeatable)"
    )
    work_cmd.add_argument("--identity", help="name in Leases (default: $POD_NAME, host-pid)")
    work_cmd.add_argument(
        "--max-shards", type=int, default=2, help="shards worked on at once (default: 2)"
    )
    work_cmd.add_argument(
        "--near",
        action="append",
        metavar="URL",
        help="a Kubo API on this worker's node: preferred for pins it holds (repeatable; "
        "default $PINSYNC_NEAR_KUBO, comma-separated)",
    )
    work_cmd.add_argument(
        "--liveness",
        help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz (answered by the worker's "
        "event loop: a blocked loop fails the probe)",
    )
    work_cmd.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    work_cmd.add_argument("--metrics-addr", default="0.0.0.0", help="address for --metrics-port")
    work_cmd.add_argument("-v", "--verbose", action="store_true")
    work_cmd.set_defaults(func=work)
    # kubectl pinsync's subcommands, imported here: `pinsync run` never needs rich and the rest.
    from pinsync.plugin import commands as plugin_commands

    plugin_commands.register(commands)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
