"""Start or join the Ray a search runs on: ``RAY_ADDRESS``, a cluster on this machine, else a local
Ray that listens on 127.0.0.1 only (``EFFICIENT_SEARCH_RAY_HOST`` opts out).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from efficient_search.ray_compat import ray_cluster_mode_off

logger = logging.getLogger(__name__)


def start_ray(cpus_needed: float) -> None:
    """Connect to the cluster in ``RAY_ADDRESS`` or start a local one that fits one trial.

    A local cluster listens on 127.0.0.1 only; see :func:`start_local_ray` for the opt-out.
    """
    import ray

    address = os.environ.get("RAY_ADDRESS")
    if address:
        # A loopback address stays loopback (Ray would swap 127.0.0.1 for the outward address).
        with loopback_node_ip(address.split("://")[-1].rsplit(":", 1)[0]):
            ray.init()
        return
    try:  # a cluster started on this machine with `ray start`
        ray.init(address="auto")
        return
    except ConnectionError:
        pass
    start_local_ray(cpus_needed)


#: Environment variable naming the address a local Ray started by the package listens on.
RAY_HOST_ENV = "EFFICIENT_SEARCH_RAY_HOST"
LOOPBACK = "127.0.0.1"


def start_local_ray(cpus_needed: float, *, host: str | None = None, temp_dir: str | None = None,
                    **init_options: Any) -> None:
    """Start a single-machine Ray that fits one trial and is reachable from this machine only.

    By default every process of it (GCS, raylet, workers, dashboard and its agents) listens on
    127.0.0.1. ``host`` (default: the ``EFFICIENT_SEARCH_RAY_HOST`` environment variable, else
    ``127.0.0.1``) opts out: an address of this machine makes Ray listen and advertise there (so
    other machines can join), ``0.0.0.0`` gives Ray's own default (every interface). ``temp_dir``
    is Ray's ``_temp_dir``; ``init_options`` go to ``ray.init``.

    Example::

        start_local_ray(2)                       # 127.0.0.1 only
        start_local_ray(2, host="10.0.0.5")      # reachable at 10.0.0.5
    """
    import math

    import ray

    host = host or os.environ.get(RAY_HOST_ENV) or LOOPBACK
    options: dict[str, Any] = {"dashboard_host": host, **init_options}
    if temp_dir is not None:
        options["_temp_dir"] = temp_dir
    if host not in ("0.0.0.0", "::"):
        options["_node_ip_address"] = host
    # A local cluster gets at least the CPUs one trial asks for, so that a 2-core laptop can
    # still run 2 workers beside the trial's own small share.
    num_cpus = max(os.cpu_count() or 1, math.ceil(cpus_needed))
    with loopback_node_ip(host):
        ray.init(num_cpus=num_cpus, **options)
    node_ip = ray.util.get_node_ip_address()
    if is_loopback(host) and not is_loopback(node_ip):
        logger.warning("Ray was asked to listen on %s but its node address is %s: its processes may be "
                       "reachable from the network.", host, node_ip)


def is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_node_ip(host: str) -> Iterator[None]:
    """Let ``ray.init`` keep a loopback node address.

    On Linux, ``ray.init(_node_ip_address="127.0.0.1")`` swaps 127.0.0.1 for the machine's outward
    address unless Ray's multi-node support is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when
    Ray is imported; the default on macOS and Windows). The GCS, raylet and workers listen on the node
    address, so turn multi-node support off while this node starts (only address look-ups read it).
    """
    if not is_loopback(host):
        yield
        return
    with ray_cluster_mode_off():
        yield
